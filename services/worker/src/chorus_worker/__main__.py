"""``python -m chorus_worker [run | replay <id> [--force] | dead-letters]``.

- ``run`` (the default): the job loop and its health/metrics port until SIGTERM.
- ``replay <id>``: enqueue dead letter ``<id>`` again (new job id); refuses one already
  replayed unless ``--force``.
- ``dead-letters``: list dead letters, newest first (``--all`` includes replayed ones,
  ``--function``, ``--limit``, ``--json``).

Settings come from the environment, as for the service.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TextIO

import orjson
import uvloop

from chorus_common.database import create_engine, create_sessionmaker
from chorus_common.logs import configure_logging
from chorus_schema.models import FailedJob
from chorus_worker.domain.dead_letters import (
    DeadLetterNotFoundError,
    ReplayRefusedError,
    list_dead_letters,
    replay,
)
from chorus_worker.settings import WorkerServiceSettings
from chorus_worker.transport.queue import create_queue_redis

__all__ = ["main", "parser"]

logger = logging.getLogger("chorus.worker")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    root = argparse.ArgumentParser(
        prog="python -m chorus_worker", description=__doc__.split("\n")[0]
    )
    commands = root.add_subparsers(dest="command")
    commands.add_parser("run", help="run jobs and serve /healthz /readyz /metrics (default)")
    replay_cmd = commands.add_parser("replay", help="enqueue a dead letter again")
    replay_cmd.add_argument("id", type=int, help="the dead letter's id (failed_jobs.id)")
    replay_cmd.add_argument("--force", action="store_true", help="replay even if replayed before")
    listing = commands.add_parser("dead-letters", help="list dead letters, newest first")
    listing.add_argument("--all", action="store_true", help="include replayed ones")
    listing.add_argument("--function", help="only this job function")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    return root


def _row(job: FailedJob) -> dict[str, object]:
    return {
        "id": job.id,
        "failed_at": job.failed_at.isoformat(),
        "function": job.function,
        "job_id": job.job_id,
        "tries": job.tries,
        "args": job.args,
        "error": job.error.split("\n", 1)[0],
        "replayed_at": job.replayed_at.isoformat() if job.replayed_at else None,
        "replay_job_id": job.replay_job_id,
    }


def _print_table(rows: list[dict[str, object]], out: TextIO) -> None:
    if not rows:
        out.write("no dead letters\n")
        return
    for row in rows:
        replayed = f"  replayed as {row['replay_job_id']}" if row["replayed_at"] else ""
        out.write(
            f"#{row['id']}  {row['failed_at']}  {row['function']}  job {row['job_id']}  "
            f"tries {row['tries']}{replayed}\n    args {orjson.dumps(row['args']).decode()}\n"
            f"    {row['error']}\n"
        )


async def _replay(settings: WorkerServiceSettings, dead_letter_id: int, *, force: bool) -> int:
    engine = create_engine(settings)
    queue = create_queue_redis(settings)
    try:
        job_id = await replay(
            create_sessionmaker(engine),
            queue,
            dead_letter_id,
            queue_name=settings.arq_queue_name,
            force=force,
        )
    except (DeadLetterNotFoundError, ReplayRefusedError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    finally:
        await queue.aclose()
        await engine.dispose()
    sys.stdout.write(f"dead letter #{dead_letter_id} replayed as job {job_id}\n")
    return 0


async def _list(settings: WorkerServiceSettings, args: argparse.Namespace) -> int:
    engine = create_engine(settings)
    try:
        found = await list_dead_letters(
            create_sessionmaker(engine),
            function=args.function,
            include_replayed=args.all,
            limit=args.limit,
        )
    finally:
        await engine.dispose()
    rows = [_row(job) for job in found]
    if args.json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
    else:
        _print_table(rows, sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parser().parse_args(argv)
    settings = WorkerServiceSettings()
    if args.command in (None, "run"):
        # Imported here: the admin commands need neither the job code nor the HTTP stack.
        from chorus_worker.main import serve  # noqa: PLC0415

        return uvloop.run(serve(settings))
    configure_logging(service=settings.service_name, level="WARNING", fmt="console")
    for warning in settings.deprecations():
        logger.warning(warning)
    if args.command == "replay":
        return asyncio.run(_replay(settings, args.id, force=args.force))
    return asyncio.run(_list(settings, args))


if __name__ == "__main__":
    sys.exit(main())
