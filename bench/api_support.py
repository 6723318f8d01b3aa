"""What the api benchmarks share: servers, seed data, processes and wrk.

Each benchmark starts its own PostgreSQL and Redis (chorus_devstack), seeds one database,
runs every contender as a real uvicorn process (uvloop + httptools, one process each) and
drives them with ``wrk`` using a fixed connection count, alternating contenders over a few
rounds so a burst of load from elsewhere on the machine hits both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_devstack.servers import RunningPostgres, RunningRedis
from chorus_schema.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "bench-secret-that-is-long-enough-for-hs256!!"
WRK = shutil.which("wrk") or "/usr/bin/wrk"


@dataclass
class Infra:
    """The benchmark's own Postgres and Redis."""

    workdir: Path
    database_url: str
    dsn: str
    redis_url: str


@contextlib.contextmanager
def infrastructure(name: str) -> Iterator[Infra]:
    """Start Postgres and Redis in a temporary directory; migrate a fresh database."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    postgres = RunningPostgres(workdir / "postgres")
    redis = RunningRedis(workdir / "redis")
    postgres.start()
    try:
        redis.start()
        try:
            url = postgres.create_database("bench")
            upgrade(url)
            dsn = url.replace("postgresql+asyncpg://", "postgresql://")
            yield Infra(workdir, url, dsn, redis.url)
        finally:
            redis.stop()
    finally:
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_sql(dsn: str, *statements: str) -> None:
    """Execute SQL statements in one connection (seeding)."""

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


def api_env(infra: Infra, port: int) -> dict[str, str]:
    """The environment of a production-like api process."""
    return {
        **os.environ,
        "ENV": "production",
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": infra.database_url,
        "REDIS_URL": infra.redis_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false",
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def process(
    name: str, argv: Sequence[str], env: dict[str, str], port: int, log_dir: Path
) -> Iterator[str]:
    """Run a server process until the block ends; yields its base URL once it is ready."""
    url = f"http://127.0.0.1:{port}"
    managed = ManagedProcess(
        ProcessSpec(name=name, argv=list(argv), env=env, cwd=ROOT, ready_url=f"{url}/readyz"),
        log_dir,
    )
    managed.start()
    try:
        managed.wait_ready()
        yield url
    finally:
        managed.stop()


def free() -> int:
    """A free loopback port."""
    return free_port()


_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_LATENCY = re.compile(r"Latency\s+([0-9.]+)(us|ms|s)")


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    rps: float
    errors: int
    mean_latency_ms: float


def wrk(url: str, *, token: str, seconds: int, connections: int, threads: int = 1) -> Load:
    """Drive ``url`` with ``wrk`` for ``seconds`` over ``connections`` connections."""
    result = subprocess.run(
        [
            WRK,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rps, latency = _RPS.search(result.stdout), _LATENCY.search(result.stdout)
    if rps is None or latency is None:
        msg = f"unexpected wrk output:\n{result.stdout}{result.stderr}"
        raise RuntimeError(msg)
    errors = _ERRORS.search(result.stdout)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency[2]]
    return Load(float(rps[1]), int(errors[1]) if errors else 0, float(latency[1]) * scale)


def python(*args: str) -> list[str]:
    """argv running this interpreter."""
    return [sys.executable, *args]
