"""What the api benchmarks share: servers, seed data, processes, CPU pinning and wrk.

Each benchmark starts its own PostgreSQL and Redis (chorus_devstack), seeds one database,
runs every contender as a real uvicorn process (uvloop + httptools, one process each) and
drives them with ``wrk`` using a fixed connection count, alternating contenders over a few
rounds so a burst of load from elsewhere on the machine hits both alike.

**CPU split** (2 cores): the server under test runs on :data:`SERVER_CPU` alone; Postgres,
Redis, ``wrk`` and this driver share :data:`LOAD_CPUS`. So the contenders compete for one
core each in turn, not with the database or the load generator, and their throughput is
bounded by their own CPU per request. Other work on the machine is not pinned away: rely
on same-run ratios and on the CPU time per request (:func:`cpu_seconds`), which contention
skews much less than requests per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_devstack.servers import RunningPostgres, RunningRedis
from chorus_schema.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "bench-secret-that-is-long-enough-for-hs256!!"
WRK = shutil.which("wrk") or "/usr/bin/wrk"  # `make bench` installs it (apt, as root)
TASKSET = shutil.which("taskset")

_CPUS = sorted(os.sched_getaffinity(0))
#: The core the server under test runs on, alone (among this benchmark's processes).
SERVER_CPU = _CPUS[0]
#: Postgres, Redis, wrk and the driver: every other core (the same one on a 1-core box).
LOAD_CPUS = frozenset(_CPUS[1:] or _CPUS)


def pin_tree(pid: int, cpus: frozenset[int]) -> None:
    """Pin a running process, its threads and its children to ``cpus``.

    Children forked later (Postgres backends) inherit the postmaster's affinity.
    """
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            for thread in proc.threads():
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(thread.id, cpus)


def pinned(argv: Sequence[str], cpus: frozenset[int]) -> list[str]:
    """``argv`` run under ``taskset`` (if there is one), so every thread it starts is pinned."""
    if TASKSET is None:
        return list(argv)
    return [TASKSET, "-c", ",".join(map(str, sorted(cpus))), *argv]


@dataclass
class Infra:
    """The benchmark's own Postgres and Redis."""

    workdir: Path
    database_url: str
    dsn: str
    redis_url: str


@contextlib.contextmanager
def infrastructure(name: str) -> Iterator[Infra]:
    """Start Postgres and Redis (pinned to :data:`LOAD_CPUS`); migrate a fresh database."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    postgres = RunningPostgres(workdir / "postgres")
    redis = RunningRedis(workdir / "redis")
    os.sched_setaffinity(0, LOAD_CPUS)  # this driver, and what it spawns unless told
    postgres.start()
    try:
        redis.start()
        try:
            for server in (postgres, redis):
                assert server.process.pid is not None
                pin_tree(server.process.pid, LOAD_CPUS)
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


def api_env(infra: Infra, port: int, *, access_log: bool = True) -> dict[str, str]:
    """The environment of a production api process: JSON logs at INFO, access log on."""
    return {
        **os.environ,
        "ENV": "production",
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": infra.database_url,
        "REDIS_URL": infra.redis_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "INFO",
        "ACCESS_LOG": str(access_log).lower(),
        "PYTHONUNBUFFERED": "1",
    }


@dataclass(frozen=True)
class Server:
    """A contender being served: its base URL and process id."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far."""
        return cpu_seconds(self.pid)


@contextlib.contextmanager
def process(
    name: str,
    argv: Sequence[str],
    env: dict[str, str],
    port: int,
    log_dir: Path,
    *,
    cpus: frozenset[int] = frozenset({SERVER_CPU}),
) -> Iterator[Server]:
    """Run a server process pinned to ``cpus`` until the block ends; yields it once ready."""
    url = f"http://127.0.0.1:{port}"
    managed = ManagedProcess(
        ProcessSpec(
            name=name, argv=pinned(argv, cpus), env=env, cwd=ROOT, ready_url=f"{url}/readyz"
        ),
        log_dir,
    )
    managed.start()
    try:
        managed.wait_ready()
        assert managed.pid is not None
        yield Server(url, managed.pid)
    finally:
        managed.stop()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far."""
    times = psutil.Process(pid).cpu_times()
    used: float = times.user + times.system
    return used


def free() -> int:
    """A free loopback port."""
    return free_port()


_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_REQUESTS = re.compile(r"(\d+) requests in")
_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_LATENCY = re.compile(r"Latency\s+([0-9.]+)(us|ms|s)")
_QUANTILE = re.compile(r"^quantile ([0-9.]+) ([0-9]+)$", re.MULTILINE)
#: How many latency quantiles each wrk run reports (evenly spaced, 0.05% ... 99.95%).
QUANTILES = 1000
#: wrk keeps every latency in an HdrHistogram; at the end of a run this prints it as
#: ``QUANTILES`` evenly spaced quantiles, an even sample of the run's distribution.
_WRK_SCRIPT = f"""
done = function(summary, latency, requests)
  for i = 1, {QUANTILES} do
    local p = (i - 0.5) * 100 / {QUANTILES}
    io.write(string.format("quantile %.3f %d\\n", p, latency:percentile(p)))
  end
end
"""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    rps: float
    requests: int
    errors: int
    mean_latency_ms: float
    #: :data:`QUANTILES` evenly spaced latency quantiles of the run, in ms.
    latency_ms: list[float] = field(default_factory=list)


def wrk(url: str, *, token: str, seconds: int, connections: int, threads: int = 1) -> Load:
    """Drive ``url`` with ``wrk`` (pinned to :data:`LOAD_CPUS`) for ``seconds``."""
    if not Path(WRK).exists():
        msg = "wrk is not installed (`make bench` installs it with apt-get when run as root)"
        raise SystemExit(msg)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    argv = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "-s",
        script.name,
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    try:
        result = subprocess.run(pinned(argv, LOAD_CPUS), capture_output=True, text=True, check=True)
    finally:
        os.unlink(script.name)
    rps, latency = _RPS.search(result.stdout), _LATENCY.search(result.stdout)
    requests = _REQUESTS.search(result.stdout)
    if rps is None or latency is None or requests is None:
        msg = f"unexpected wrk output:\n{result.stdout}{result.stderr}"
        raise RuntimeError(msg)
    errors = _ERRORS.search(result.stdout)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency[2]]
    return Load(
        float(rps[1]),
        int(requests[1]),
        int(errors[1]) if errors else 0,
        float(latency[1]) * scale,
        [int(us) / 1000 for _, us in _QUANTILE.findall(result.stdout)],
    )


@dataclass(frozen=True)
class Measured:
    """One wrk run against one server, with the server's CPU time over that run."""

    load: Load
    cpu_us_per_request: float


def measure(server: Server, path: str, *, token: str, seconds: int, connections: int) -> Measured:
    """Load ``server`` at ``path`` and account the server's CPU time per request."""
    before = server.cpu_seconds()
    load = wrk(f"{server.url}{path}", token=token, seconds=seconds, connections=connections)
    used = server.cpu_seconds() - before
    return Measured(load, used / max(load.requests, 1) * 1e6)


def spread(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    """``median [min-max]`` of the values, formatted with ``fmt``."""
    median = statistics.median(values)
    low, high = min(values), max(values)
    return f"{fmt.format(median)} [{fmt.format(low)}-{fmt.format(high)}]"


def python(*args: str) -> list[str]:
    """argv running this interpreter."""
    return [sys.executable, *args]


def load_average() -> str:
    """The 1-minute load average, for the record (the cores are shared)."""
    return f"{os.getloadavg()[0]:.1f}"


def cpu_split(extra: str = "") -> str:
    """The CPU split sentence of the bench result contract."""
    load_cpus = ",".join(map(str, sorted(LOAD_CPUS)))
    return (
        f"server under test alone on CPU {SERVER_CPU} (taskset); Postgres, Redis, wrk and "
        f"the driver on CPU {load_cpus}; other work on the machine is not pinned{extra}"
    )


def row(
    figure: str,
    *,
    peer: str,
    peer_values: Sequence[float] | None,
    chorus_values: Sequence[float] | None,
    unit: str,
    ratios: Sequence[float] | None,
    target: str,
    met: bool | None,
    note: str = "",
) -> dict[str, Any]:
    """One row of the bench result contract: medians, [min, max] spreads, the ratio."""

    def median(values: Sequence[float] | None) -> float | None:
        return round(statistics.median(values), 3) if values else None

    def span(values: Sequence[float] | None) -> list[float] | None:
        return [round(min(values), 3), round(max(values), 3)] if values else None

    return {
        "figure": figure,
        "peer": peer,
        "peer_value": median(peer_values),
        "peer_spread": span(peer_values),
        "chorus": median(chorus_values),
        "chorus_spread": span(chorus_values),
        "unit": unit,
        "ratio": median(ratios),
        "target": target,
        "met": met,
        "note": note,
    }


def write_result(
    path: Path,
    *,
    bench: str,
    cpu_split: str,
    rows: Sequence[dict[str, Any]],
    distributions: Sequence[dict[str, Any]] = (),
) -> None:
    """Write the bench result contract's JSON object to ``path``."""
    document = {
        "bench": bench,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_split": cpu_split,
        "rows": list(rows),
        "distributions": list(distributions),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
