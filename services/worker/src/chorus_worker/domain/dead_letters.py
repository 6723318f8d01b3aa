"""Dead letters: jobs that failed for good, kept in ``failed_jobs`` until someone replays them.

A row holds the job's function, its arguments as JSON (``{"args": [...], "kwargs": {...}}``),
the error with its traceback, and how many tries were spent. :func:`replay` enqueues the
same call again under a new job id and remembers that it did, so one dead letter is not
replayed twice by accident (``force`` says it is on purpose).

Two kinds of row record *data* rather than a call, and cannot be replayed: a stream entry
``persist_messages`` could not store (``{"room", "entry_id", "entry"}``), and a payload on
the queue that was not a JSON job (``unreadable_payload``, ``{"payload": <a preview>}``).

A dead letter is often about input a store refused, so it must not be refused in turn:
text that Postgres cannot hold (NUL, lone surrogates) is kept spelled out (``\\x00``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from arq.connections import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_common.text import escape_unstorable
from chorus_schema.models import FailedJob

__all__ = [
    "UNREADABLE_PAYLOAD",
    "DeadLetterNotFoundError",
    "ReplayRefusedError",
    "add_dead_letter",
    "encode_arguments",
    "list_dead_letters",
    "record_dead_letter",
    "replay",
    "storable",
]

#: Longest error text kept (the head says what failed, the tail of the traceback where).
MAX_ERROR_CHARS = 8000
#: ``function`` of the dead letter of a queue payload that was not a JSON job.
UNREADABLE_PAYLOAD = "unreadable_payload"


class DeadLetterNotFoundError(LookupError):
    """No dead letter has that id."""


class ReplayRefusedError(Exception):
    """The dead letter was replayed already (pass ``force`` to replay it again)."""


def storable(value: Any) -> Any:
    """``value`` with the text Postgres would refuse spelled out (in strings and keys)."""
    if isinstance(value, str):
        return escape_unstorable(value)
    if isinstance(value, dict):
        return {escape_unstorable(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def encode_arguments(args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The job's arguments as JSON; a value JSON cannot hold is kept as its ``repr``."""
    plain = orjson.dumps(storable({"args": list(args), "kwargs": kwargs}), default=repr)
    encoded = orjson.loads(plain)
    assert isinstance(encoded, dict)
    return encoded


async def record_dead_letter(
    sessions: async_sessionmaker[AsyncSession],
    *,
    job_id: str,
    function: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    error: str,
    tries: int,
    record: dict[str, Any] | None = None,
) -> int:
    """Write one dead letter; returns its id.

    ``record`` replaces the call's arguments for a dead letter of data, not of a call.
    """
    async with sessions.begin() as session:
        return await add_dead_letter(
            session,
            job_id=job_id,
            function=function,
            args=record if record is not None else encode_arguments(args, kwargs),
            error=error,
            tries=tries,
        )


async def add_dead_letter(
    session: AsyncSession,
    *,
    job_id: str,
    function: str,
    args: dict[str, Any],
    error: str,
    tries: int,
) -> int:
    """Add one dead letter in ``session``'s transaction (``args`` as stored); its id."""
    error = escape_unstorable(error)
    if len(error) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2
        error = f"{error[:half]}\n[…]\n{error[-half:]}"
    row = FailedJob(
        job_id=escape_unstorable(job_id)[:128],
        function=function[:128],
        args=storable(args),
        error=error,
        tries=tries,
    )
    session.add(row)
    await session.flush()
    return row.id


async def list_dead_letters(
    sessions: async_sessionmaker[AsyncSession],
    *,
    function: str | None = None,
    include_replayed: bool = False,
    limit: int = 50,
) -> list[FailedJob]:
    """The newest dead letters first, not yet replayed unless asked."""
    query = select(FailedJob).order_by(FailedJob.id.desc()).limit(limit)
    if function is not None:
        query = query.where(FailedJob.function == function)
    if not include_replayed:
        query = query.where(FailedJob.replayed_at.is_(None))
    async with sessions() as session:
        return list((await session.scalars(query)).all())


async def replay(
    sessions: async_sessionmaker[AsyncSession],
    queue: ArqRedis,
    dead_letter_id: int,
    *,
    queue_name: str,
    force: bool = False,
) -> str:
    """Enqueue a dead letter's call again under a new job id; returns that id.

    The row is locked while the job is enqueued and marked replayed in the same
    transaction: two operators replaying at once get one job, and a failed enqueue leaves
    the row as it was. (A crash between the enqueue and the commit would leave the job
    enqueued and the row unmarked — a window of one commit.)
    """
    async with sessions.begin() as session:
        row = await session.get(FailedJob, dead_letter_id, with_for_update=True)
        if row is None:
            msg = f"no dead letter #{dead_letter_id}"
            raise DeadLetterNotFoundError(msg)
        if not _is_call(row.args):
            msg = (
                f"dead letter #{row.id} ({row.function}) records data that could not be "
                "stored or read, not a call: there is nothing to run again"
            )
            raise ReplayRefusedError(msg)
        if row.replayed_at is not None and not force:
            msg = (
                f"dead letter #{row.id} was replayed at {row.replayed_at.isoformat()} "
                f"as job {row.replay_job_id}; pass --force to replay it again"
            )
            raise ReplayRefusedError(msg)
        job_id = f"replay:{row.id}:{uuid.uuid4().hex[:12]}"
        args = list(row.args.get("args", []))
        kwargs = dict(row.args.get("kwargs", {}))
        job = await queue.enqueue_job(
            row.function, *args, _job_id=job_id, _queue_name=queue_name, **kwargs
        )
        if job is None:  # pragma: no cover - the id is fresh, so arq cannot know it
            msg = f"arq refused job id {job_id}"
            raise RuntimeError(msg)
        row.replayed_at = await session.scalar(select(func.now()))
        row.replay_job_id = job_id
    return job_id


def _is_call(args: dict[str, Any]) -> bool:
    return isinstance(args.get("args"), list) and isinstance(args.get("kwargs"), dict)
