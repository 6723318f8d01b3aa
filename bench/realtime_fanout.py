"""Fan-out benchmark: Chorus realtime against python-socketio and a plain ConnectionManager.

One run, same machine, same load generator (``peers/wsload.py``, a lean uvloop client in
its own process), every figure repeated ``--runs`` times and reported as the median with
the spread (min-max):

1. 1 room x SUBSCRIBERS subscribers — over 2 Chorus replicas, over 2 python-socketio
   processes (AsyncRedisManager), and on an in-process ConnectionManager — then bursts of
   messages published as fast as the publisher can: deliveries/s (wall clock) and
   deliveries per server CPU-second ("per core"). python-socketio delivers ~40x slower, so
   its bursts are shorter (``--socketio-burst``) to take about as long.
2. Publish->deliver p50/p99 at half of each system's median max rate (latency measured on
   every ``--sample-every``-th subscriber, all of them counted).
3. Chorus: each paced run is followed by two with one extra client in the room, one
   where it has stopped reading and one where it reads (the control), in alternating
   order: others' p99 with a stalled client vs none stalled.
4. Memory per idle WebSocket: RSS delta / connections at IDLE connections on one fresh
   Chorus replica (rooms of 100 users) and one fresh python-socketio process.

The default run fits in about 2 minutes on 2 quiet cores (3 runs, 2 s paced runs, one
memory run at 10,000 connections); ``--long`` is the slower version (5 runs, 4 s, bursts of
200 for every system, 2 memory runs). ``--json-out PATH`` writes the bench contract (rows:
figure, peer, Chorus, ratio, target, met; latency samples for the plots); ``--out PATH``
every raw measurement.

CPU split (when the machine has 2+ CPUs): the systems under test (their server processes
and Redis) are pinned to ``--server-cpus``; the load generator, the publishers and this
script to ``--load-cpus``. The load generator's CPU share is reported per run: near 100%
means it, not the server, set the pace. Other users of the machine are not pinned, so
numbers stay noisy; the load average before and after is recorded.

The peers live in their own venv (``bench/.venvs/realtime-peers``, made with uv on the
first run). Run: ``.venv/bin/python bench/realtime_fanout.py [--long] [--json-out PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import connect

from chorus_common.events import EventBus, room_channel
from chorus_common.redis_client import create_redis
from chorus_common.rooms import RoomDirectory
from chorus_common.tokens import TokenService
from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningRedis

ROOT = Path(__file__).resolve().parent
PEERS = ROOT / "peers"
VENV = ROOT / ".venvs" / "realtime-peers"
SECRET = "bench-secret-that-is-long-enough-for-hs256-keys"
PEER_PACKAGES = ["python-socketio>=5.11", "redis>=5", "uvicorn[standard]>=0.30", "orjson"]

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


# -- processes -------------------------------------------------------------------------------


def peer_python() -> str:
    """The peers' interpreter, creating their venv on first use (a fresh clone has none)."""
    python = VENV / "bin" / "python"
    done = VENV / ".installed"  # written last: an interrupted install is redone
    if not done.exists():
        uv = [shutil.which("uv") or "uv"]
        if shutil.which("uv") is None:  # `make venv` may have installed it as a module
            uv = [sys.executable, "-m", "uv"]
        print("installing python-socketio into bench/.venvs/realtime-peers (first run only)")
        subprocess.run(
            [*uv, "venv", "-q", "--clear", "--python", sys.executable, str(VENV)], check=True
        )
        subprocess.run(
            [*uv, "pip", "install", "-q", "--python", str(python), *PEER_PACKAGES], check=True
        )
        done.write_text(" ".join(PEER_PACKAGES) + "\n")
    return str(python)


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
def processes() -> Iterator[Procs]:
    started: Procs = []
    try:
        yield started
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_chorus(
    started: Procs, split: Split, redis_url: str, name: str, log: Path, **env: str
) -> tuple[int, subprocess.Popen[bytes]]:
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


class Load:
    """A wsload process (pinned to the load CPUs)."""

    def __init__(self, job: dict[str, Any], started: Procs, split: Split) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(job, fh)
        self.proc = subprocess.Popen(
            [sys.executable, str(PEERS / "wsload.py"), fh.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        started.append(self.proc)
        split.pin_load(self.proc.pid)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if command:
            self.proc.stdin.write((command + "\n").encode())
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            msg = f"load generator exited ({self.proc.poll()})"
            raise RuntimeError(msg)
        result: dict[str, Any] = json.loads(line)
        return result

    def ready(self) -> int:
        return int(self.ask("")["ready"])


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

    async def burst(self, count: int) -> None:
        raise NotImplementedError

    async def rate(self, per_second: float, seconds: float) -> None:
        raise NotImplementedError


async def paced(one: Any, per_second: float, seconds: float) -> None:
    """Call ``one()`` ``per_second`` times a second for ``seconds``, on a fixed schedule."""
    start = time.time()
    for i in range(int(per_second * seconds)):
        delay = start + i / per_second - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await one()


class ChorusPublisher(Publisher):
    def __init__(self, bus: EventBus, room: str) -> None:
        self.bus, self.channel, self.n = bus, room_channel(room), 0

    def _one(self) -> Any:
        self.n += 1
        data = {"message": "x" * 64, "n": self.n, "t": time.time()}
        return self.bus.publish(self.channel, "message", data, sender="bench")

    async def burst(self, count: int) -> None:
        for start in range(0, count, 16):
            await asyncio.gather(*(self._one() for _ in range(min(16, count - start))))

    async def rate(self, per_second: float, seconds: float) -> None:
        await paced(self._one, per_second, seconds)


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

    async def burst(self, count: int) -> None:
        await self._ask(f"burst {count}")

    async def rate(self, per_second: float, seconds: float) -> None:
        await self._ask(f"rate {per_second} {seconds}")


class SeedPublisher(Publisher):
    """A WebSocket client of the ConnectionManager: whatever it sends is broadcast."""

    def __init__(self, url: str) -> None:
        self.url, self.n, self.ws = url, 0, None

    async def open(self) -> None:
        self.ws = await connect(self.url, max_queue=None, ping_interval=None)  # type: ignore[assignment]

    async def _one(self) -> None:
        self.n += 1
        await self.ws.send(json.dumps({"message": "x" * 64, "n": self.n, "t": time.time()}))  # type: ignore[attr-defined]

    async def burst(self, count: int) -> None:
        for _ in range(count):
            await self._one()

    async def rate(self, per_second: float, seconds: float) -> None:
        await paced(self._one, per_second, seconds)


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


async def one_burst(
    load: Load, publisher: Publisher, servers: Sequence[int], burst: int, subscribers: int
) -> dict[str, Any]:
    await asyncio.sleep(SETTLE_S)  # let the previous run's tail (and GC) settle
    load.ask("report")
    cpu0, load0, t0 = cpu_seconds(servers), cpu_seconds([load.proc.pid]), time.monotonic()
    await publisher.burst(burst)
    await wait_delivered(load, burst * subscribers)
    cpu1, load1, t1 = cpu_seconds(servers), cpu_seconds([load.proc.pid]), time.monotonic()
    full = load.ask("report")
    span = max(1e-6, full["last"] - full["first"])
    return {
        "delivered": full["messages"],
        "expected": burst * subscribers,
        "deliveries_per_s": full["messages"] / span,
        "deliveries_per_cpu_s": full["messages"] / max(1e-6, cpu1 - cpu0),
        "server_cpu_s": cpu1 - cpu0,
        "loadgen_cpu_share": (load1 - load0) / max(1e-6, t1 - t0),
        "p50_ms": full["p50_ms"],
        "p99_ms": full["p99_ms"],
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


#: Latencies kept per paced run (evenly spread over its sorted distribution), for the plots.
SAMPLES_PER_RUN = 1000


async def one_rate(
    load: Load,
    publisher: Publisher,
    per_second: float,
    seconds: float,
    subscribers: int,
    servers: Sequence[int] = (),
    histogram: ServerLatency | None = None,
) -> dict[str, Any]:
    await asyncio.sleep(SETTLE_S)
    load.ask("report")
    before = histogram.snapshot() if histogram else {}
    cpu0, load0, t0 = cpu_seconds(servers), cpu_seconds([load.proc.pid]), time.monotonic()
    await publisher.rate(per_second, seconds)
    await wait_delivered(load, int(per_second * seconds) * subscribers)
    cpu1, load1, t1 = cpu_seconds(servers), cpu_seconds([load.proc.pid]), time.monotonic()
    report = load.ask(f"report {SAMPLES_PER_RUN}")
    server_side = {}
    if histogram:
        after = histogram.snapshot()
        server_side = {
            "server_p50_ms_le": histogram.quantile_ms(before, after, 0.50),
            "server_p99_ms_le": histogram.quantile_ms(before, after, 0.99),
        }
    return {
        "started_at": t0 - time.monotonic() + time.time(),
        "ended_at": time.time(),
        **server_side,
        "delivered": report["messages"],
        "expected": int(per_second * seconds) * subscribers,
        "p50_ms": report["p50_ms"],
        "frames_per_read": report["frames"] / max(1, report["reads"]),
        "p99_ms": report["p99_ms"],
        "max_ms": report["max_ms"],
        "samples_ms": report["samples_ms"],
        "server_cpu_share": (cpu1 - cpu0) / max(1e-6, t1 - t0),
        "loadgen_cpu_share": (load1 - load0) / max(1e-6, t1 - t0),
    }


class Profiler:
    """``py-spy record`` of some processes for a while (``--py-spy``), as collapsed stacks."""

    def __init__(self, py_spy: str | None, directory: Path) -> None:
        self.py_spy, self.directory = py_spy, directory
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
                    [*argv, "--rate", "250", "--nonblocking"],
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


#: ``extra(stalled)``: one more client in the room for one paced run, reading or not.
Extra = Callable[[bool], AbstractAsyncContextManager[None]]


async def fanout(
    name: str,
    load: Load,
    publisher: Publisher,
    servers: Sequence[int],
    args: argparse.Namespace,
    histogram: ServerLatency | None = None,
    *,
    burst: int,
    extra: Extra | None = None,
) -> dict[str, Any]:
    """Bursts (max rate), then paced runs at half the median max rate.

    With ``extra``, each paced run is followed by two more with one extra client in the
    room: one where it has stopped reading (stalled), one where it reads (the control: same
    clients, same join and leave), in alternating order so drift in the machine's load
    hits both alike.
    """
    n = args.subscribers
    started = time.monotonic()
    await asyncio.sleep(SETTLE_S)  # let join/connect chatter settle
    bursts = [await one_burst(load, publisher, servers, burst, n) for _ in range(args.runs)]
    rate = spread([b["deliveries_per_s"] for b in bursts])
    half = rate["median"] / n / 2
    profiler = Profiler(args.py_spy, args.profile_dir)
    profiler.start(name.split(maxsplit=1)[0], [*servers, load.proc.pid])
    halves: list[dict[str, Any]] = []
    with_extra: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for i in range(args.runs):
        halves.append(
            await one_rate(load, publisher, half, args.half_seconds, n, servers, histogram)
        )
        if extra is not None:
            for stalled in (True, False) if i % 2 == 0 else (False, True):
                async with extra(stalled):
                    with_extra[stalled].append(
                        await one_rate(
                            load, publisher, half, args.half_seconds, n, servers, histogram
                        )
                    )
    profiler.stop()
    curve = [
        {
            "msgs_per_s": rate,
            **await one_rate(load, publisher, rate, args.half_seconds, n, servers, histogram),
        }
        for rate in (args.curve if histogram else ())
    ]
    result = {
        "system": name,
        "burst": burst,
        "deliveries_per_s": rate,
        "deliveries_per_cpu_s": spread([b["deliveries_per_cpu_s"] for b in bursts]),
        "loadgen_cpu_share": spread([b["loadgen_cpu_share"] for b in bursts]),
        "burst_p99_ms": spread([b["p99_ms"] for b in bursts]),
        "half_rate_msgs_per_s": half,
        "half_p50_ms": spread([h["p50_ms"] for h in halves]),
        "half_p99_ms": spread([h["p99_ms"] for h in halves]),
        "half_server_p99_ms_le": spread([h.get("server_p99_ms_le") for h in halves]),
        "half_samples_ms": pooled([h["samples_ms"] for h in halves]),
        "half_server_cpu_share": spread([h["server_cpu_share"] for h in halves]),
        "half_loadgen_cpu_share": spread([h["loadgen_cpu_share"] for h in halves]),
        "lost": sum(b["expected"] - b["delivered"] for b in bursts)
        + sum(max(0, h["expected"] - h["delivered"]) for h in halves),
        "bursts": bursts,
        "halves": halves,
        "curve": curve,
        "seconds": time.monotonic() - started,
    }
    if extra is not None:
        for key, runs in (("stalled", with_extra[True]), ("reading", with_extra[False])):
            result[key] = {
                "half_p99_ms": spread([r["p99_ms"] for r in runs]),
                "half_p50_ms": spread([r["p50_ms"] for r in runs]),
                "half_server_p99_ms_le": spread([r.get("server_p99_ms_le") for r in runs]),
                "half_samples_ms": pooled([r["samples_ms"] for r in runs]),
                "runs": runs,
            }
    hidden = {"bursts", "halves", "curve", "stalled", "reading", "half_samples_ms"}
    print(json.dumps({k: v for k, v in result.items() if k not in hidden}), flush=True)
    for point in curve:
        print(json.dumps(point), flush=True)
    return result


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


async def bench_chorus(
    args: argparse.Namespace, split: Split, redis_url: str, bus: EventBus, work: Path
) -> dict[str, Any]:
    tokens = TokenService(secret=SECRET, issuer="chorus")
    n = args.subscribers
    results: dict[str, Any] = {}
    with processes() as started:
        p1, s1 = start_chorus(started, split, redis_url, "bench-1", work / "c1.log", **BIG_QUEUE)
        p2, s2 = start_chorus(started, split, redis_url, "bench-2", work / "c2.log", **BIG_QUEUE)
        users = [str(10_000 + i) for i in range(n)]
        load = Load(
            {
                "dialect": "chorus",
                "targets": chorus_targets([p1, p2], "fan", users, tokens),
                "sample_every": args.sample_every,
            },
            started,
            split,
        )
        load.ready()
        publisher = ChorusPublisher(bus, "fan")
        histogram = ServerLatency([p1, p2])
        servers = [s1.pid, s2.pid]

        @asynccontextmanager
        async def extra(stalled: bool) -> AsyncIterator[None]:
            """One more client in the same room, stalled or reading (for one paced run)."""
            client = Load(
                {
                    "dialect": "chorus",
                    "stall": int(stalled),
                    "targets": chorus_targets([p1], "fan", ["99999"], tokens),
                },
                started,
                split,
            )
            client.ready()
            try:
                yield
            finally:
                client.proc.kill()
                client.proc.wait()

        results["chorus"] = await fanout(
            "chorus", load, publisher, servers, args, histogram, burst=args.burst, extra=extra
        )
    return results


async def bench_socketio(
    args: argparse.Namespace, split: Split, redis_url: str, python: str, work: Path
) -> dict[str, Any]:
    n = args.subscribers
    with processes() as started:
        env = {"REDIS_URL": redis_url}
        q1, t1 = start_peer(
            started, split, "socketio_server.py", work / "sio-1.log", python=python, **env
        )
        q2, t2 = start_peer(
            started, split, "socketio_server.py", work / "sio-2.log", python=python, **env
        )
        targets = [
            {
                "host": "127.0.0.1",
                "port": (q1, q2)[i % 2],
                "path": "/socket.io/?EIO=4&transport=websocket",
            }
            for i in range(n)
        ]
        load = Load(
            {"dialect": "socketio", "targets": targets, "sample_every": args.sample_every},
            started,
            split,
        )
        load.ready()
        pub = subprocess.Popen(
            [python, str(PEERS / "socketio_publisher.py")],
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        started.append(pub)
        split.pin_load(pub.pid)
        return await fanout(
            "python-socketio",
            load,
            PipePublisher(pub),
            [t1.pid, t2.pid],
            args,
            burst=args.socketio_burst,
        )


async def bench_manager(args: argparse.Namespace, split: Split, work: Path) -> dict[str, Any]:
    n = args.subscribers
    with processes() as started:
        port, manager = start_peer(started, split, "manager_server.py", work / "manager.log")
        targets = [{"host": "127.0.0.1", "port": port, "path": f"/ws/{i}"} for i in range(n)]
        load = Load(
            {"dialect": "manager", "targets": targets, "sample_every": args.sample_every},
            started,
            split,
        )
        load.ready()
        publisher = SeedPublisher(f"ws://127.0.0.1:{port}/ws/0")
        await publisher.open()
        return await fanout(
            "in-process ConnectionManager",
            load,
            publisher,
            [manager.pid],
            args,
            burst=args.manager_burst,
        )


async def idle_memory(
    args: argparse.Namespace, split: Split, redis_url: str, python: str, work: Path
) -> dict[str, Any]:
    """RSS delta per idle connection, one fresh server per system and run.

    Memory is not a speed figure: Chorus and python-socketio are measured at the same
    time, each server and load generator free to use every CPU, so the 10,000-connection
    figure fits in the default run's time.
    """
    tokens = TokenService(secret=SECRET, issuer="chorus")
    idle: int = args.idle
    anywhere = Split(split.server | split.load, split.server | split.load)

    async def measure(
        start: Callable[[Procs], tuple[int, subprocess.Popen[bytes]]],
        targets: Callable[[int], list[dict[str, Any]]],
        dialect: str,
    ) -> float:
        with processes() as started:
            port, server = await asyncio.to_thread(start, started)
            before = rss(server)
            load = Load({"dialect": dialect, "targets": targets(port)}, started, anywhere)
            await asyncio.to_thread(load.ready)
            return (await settled_rss(server) - before) / idle

    def chorus_server(run: int) -> Callable[[Procs], tuple[int, subprocess.Popen[bytes]]]:
        return lambda started: start_chorus(
            started,
            anywhere,
            redis_url,
            f"bench-mem-{run}",
            work / "chorus-mem.log",
            MAX_CONNECTIONS_PER_USER="100000",
        )

    def chorus_clients(port: int) -> list[dict[str, Any]]:
        targets = []
        for i in range(idle):
            targets += chorus_targets([port], f"idle-{i // 100}", [str(50_000 + i)], tokens)
        return targets

    def socketio_server(started: Procs) -> tuple[int, subprocess.Popen[bytes]]:
        return start_peer(
            started,
            anywhere,
            "socketio_server.py",
            work / "sio-mem.log",
            python=python,
            REDIS_URL=redis_url,
        )

    def socketio_clients(port: int) -> list[dict[str, Any]]:
        path = "/socket.io/?EIO=4&transport=websocket"
        return [{"host": "127.0.0.1", "port": port, "path": path} for _ in range(idle)]

    chorus: list[float] = []
    socketio: list[float] = []
    started_at = time.monotonic()
    for run in range(args.memory_runs):
        c, s = await asyncio.gather(
            measure(chorus_server(run), chorus_clients, "chorus"),
            measure(socketio_server, socketio_clients, "socketio"),
        )
        chorus.append(c)
        socketio.append(s)
    result = {
        "idle_connections": idle,
        "runs": args.memory_runs,
        "chorus_bytes_per_conn": spread(chorus),
        "socketio_bytes_per_conn": spread(socketio),
        "seconds": time.monotonic() - started_at,
    }
    print(json.dumps(result), flush=True)
    return result


async def run(args: argparse.Namespace, split: Split) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    split.pin_load(os.getpid())
    python = peer_python()
    work = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "subscribers": args.subscribers,
        "burst": args.burst,
        "half_seconds": args.half_seconds,
        "runs": args.runs,
        "latency_sampled_every": args.sample_every,
        "cpu_split": split.describe(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
    }
    print(f"CPU split: {split.describe()}", flush=True)
    redis_server = RunningRedis(work / "redis")
    redis_server.start()
    assert redis_server.process.pid is not None
    if args.redis_on_load_cpus:  # a diagnostic: how much does Redis's share of CPU 0 cost?
        split.pin_load(redis_server.process.pid)
    else:
        split.pin_server(redis_server.process.pid)
    redis = create_redis(redis_server.url, client_name="bench")
    bus = EventBus(redis, history_size=1000, history_ttl=86_400)
    # What the api does at startup: the room access lists are in Redis (there are none
    # here), so realtime lets sockets into rooms that exist by name.
    await RoomDirectory(redis).mark_loaded()
    try:
        if "fanout" in args.only or "chorus" in args.only:
            results |= await bench_chorus(args, split, redis_server.url, bus, work)
        if "fanout" in args.only:
            results["socketio"] = await bench_socketio(args, split, redis_server.url, python, work)
            results["manager"] = await bench_manager(args, split, work)
        if "memory" in args.only:
            results["memory"] = await idle_memory(args, split, redis_server.url, python, work)
    finally:
        await redis.aclose()
        redis_server.stop()
    results["loadavg_after"] = os.getloadavg()
    return results


# -- the result (bench JSON contract) -------------------------------------------------------


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


def contract(r: dict[str, Any]) -> dict[str, Any]:
    """The bench JSON contract: rows (figure, peer, Chorus, ratio, target, met) + samples."""
    c, s, manager, mem = r.get("chorus"), r.get("socketio"), r.get("manager"), r.get("memory")
    runs = f"median (min-max) of {r['runs']} run(s)"
    subs = f"1 room x {r['subscribers']:,} subscribers"
    rows: list[dict[str, Any]] = []
    peers = [("python-socketio + AsyncRedisManager (2 processes)", s)]
    peers.append(("in-process ConnectionManager (1 process)", manager))
    for peer, p in peers:
        if c is None or p is None:
            continue
        ratio = (median(c["deliveries_per_s"]) or 0) / (median(p["deliveries_per_s"]) or 1)
        is_socketio = p is s
        rows.append(
            row(
                f"Fan-out deliveries/s, {subs}, Chorus over 2 replicas",
                peer,
                p["deliveries_per_s"],
                c["deliveries_per_s"],
                "deliveries/s",
                ">= 2x" if is_socketio else "(reference)",
                ratio >= 2 if is_socketio else None,
                note=f"bursts of {p['burst']} (peer) / {c['burst']} (Chorus) messages; "
                f"wall clock first to last delivery; {runs}",
            )
        )
    if c is not None:
        per_core = median(c["deliveries_per_cpu_s"])
        rows.append(
            row(
                "Fan-out deliveries per server CPU-second (per core)",
                "python-socketio + AsyncRedisManager (2 processes)",
                s["deliveries_per_cpu_s"] if s else None,
                c["deliveries_per_cpu_s"],
                "deliveries/CPU-s",
                ">= 10,000",
                per_core is not None and per_core >= 10_000,
                note="deliveries / CPU seconds of the server processes during the bursts "
                "(Redis excluded); coarse: CPU times tick every 10 ms",
            )
        )
        p99 = median(c["half_p99_ms"])
        for peer, p in peers:
            rows.append(
                row(
                    "Publish->deliver p99 at half of each system's max rate",
                    peer,
                    p["half_p99_ms"] if p else None,
                    c["half_p99_ms"],
                    "ms",
                    "<= 50 ms",
                    p99 is not None and p99 <= 50,
                    note=f"Chorus at {c['half_rate_msgs_per_s']:,.0f} msgs/s "
                    f"({c['half_rate_msgs_per_s'] * r['subscribers']:,.0f} deliveries/s)"
                    + (
                        f", peer at {p['half_rate_msgs_per_s']:,.0f} msgs/s "
                        f"({p['half_rate_msgs_per_s'] * r['subscribers']:,.0f} deliveries/s)"
                        if p
                        else ""
                    )
                    + f"; Chorus server-side p99 <= {median(c['half_server_p99_ms_le'])} ms "
                    f"(its histogram's bucket); {runs}",
                )
            )
        stalled, reading = c.get("stalled"), c.get("reading")
        if stalled and reading:
            delta = (median(stalled["half_p99_ms"]) or 0) / (median(reading["half_p99_ms"]) or 1)
            rows.append(
                row(
                    "p99 of the other clients with one stalled client in the room",
                    "Chorus, the same extra client reading (alternating runs)",
                    reading["half_p99_ms"],
                    stalled["half_p99_ms"],
                    "ms",
                    "<= +10%",
                    delta <= 1.10,
                    note=f"{delta - 1:+.0%}; one extra client in the room (a process of its "
                    "own) that stopped reading vs one that reads; half max rate; "
                    f"{runs} each, alternating; without any extra client: "
                    f"{median(c['half_p99_ms']) or 0:.1f} ms",
                )
            )
    if mem:
        kib = (median(mem["chorus_bytes_per_conn"]) or 0) / 1024
        rows.append(
            row(
                f"Memory per idle WebSocket at {mem['idle_connections']:,} connections, "
                "one replica",
                "python-socketio (1 process)",
                mem["socketio_bytes_per_conn"],
                mem["chorus_bytes_per_conn"],
                "KiB",
                "<= 20 KiB",
                kib <= 20,
                scale=1024,
                note=f"RSS delta / connections (rooms of 100), fresh server; median of "
                f"{mem['runs']} run(s)",
            )
        )
    series = {
        name: system["half_samples_ms"]
        for name, system in (("Chorus", c), ("python-socketio", s), ("ConnectionManager", manager))
        if system is not None and system.get("half_samples_ms")
    }
    distributions = []
    if series:
        distributions.append(
            {
                "title": "Publish->deliver latency at half of each system's max rate",
                "unit": "ms",
                "series": series,
            }
        )
    if c is not None and c.get("stalled") and c.get("reading"):
        distributions.append(
            {
                "title": "Chorus publish->deliver latency at half max rate, "
                "one extra client reading vs stalled",
                "unit": "ms",
                "series": {
                    "extra client reading": c["reading"]["half_samples_ms"],
                    "extra client stalled": c["stalled"]["half_samples_ms"],
                },
            }
        )
    return {
        "bench": "realtime_fanout",
        "date": r["date"],
        "cpu_split": r["cpu_split"] + f"; load average before/after {r['loadavg_before'][0]:.2f}/"
        f"{r['loadavg_after'][0]:.2f} on {r['cpus']} CPUs",
        "rows": rows,
        "distributions": distributions,
    }


def number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return f"{value:,.1f}" if unit in {"ms", "KiB"} else f"{value:,.0f}"


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


#: ``--long``: the figures as measured before the 2-minute budget (about 6 minutes).
LONG = {
    "runs": 5,
    "half_seconds": 4.0,
    "burst": 200,
    "socketio_burst": 200,
    "manager_burst": 200,
    "memory_runs": 2,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=200, help="messages per Chorus burst")
    parser.add_argument(
        "--socketio-burst",
        type=int,
        default=50,
        help="messages per python-socketio burst (it delivers ~40x slower: ~3 s each)",
    )
    parser.add_argument(
        "--manager-burst", type=int, default=100, help="messages per ConnectionManager burst"
    )
    parser.add_argument("--half-seconds", type=float, default=2.0, help="length of a paced run")
    parser.add_argument("--runs", type=int, default=3, help="repetitions per fan-out figure")
    parser.add_argument(
        "--sample-every",
        type=int,
        default=4,
        help="latency measured on every k-th subscriber (all are counted), same for every system",
    )
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--memory-runs", type=int, default=1)
    parser.add_argument(
        "--long",
        action="store_true",
        help="the long version: 5 runs of 4 s paced runs, bursts of 200 for every system, "
        "2 memory runs (overrides those flags)",
    )
    parser.add_argument("--server-cpus", help="e.g. 0 (default: the first CPU)")
    parser.add_argument("--load-cpus", help="e.g. 1 (default: the other CPUs)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["fanout", "chorus", "memory"],
        default=["fanout", "memory"],
        help="chorus: Chorus's fan-out figures alone (no peers)",
    )
    parser.add_argument(
        "--curve",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[],
        help="Chorus: also measure latency at these publish rates (messages/s), one run each",
    )
    parser.add_argument(
        "--redis-on-load-cpus", action="store_true", help="diagnostic: Redis off the server CPUs"
    )
    parser.add_argument("--py-spy", help="py-spy binary: profile servers at half rate")
    parser.add_argument(
        "--profile-dir", type=Path, default=ROOT / "results" / "raw" / "realtime-profiles"
    )
    parser.add_argument(
        "--json-out", type=Path, help="write the bench contract JSON (rows, distributions) here"
    )
    parser.add_argument(
        "--out", type=Path, help="also write every raw measurement (per run) as JSON here"
    )
    args = parser.parse_args()
    if args.long:
        for name, value in LONG.items():
            setattr(args, name, value)
    split = Split.parse(args.server_cpus, args.load_cpus)
    started = time.monotonic()
    results = asyncio.run(run(args, split))
    results["seconds"] = time.monotonic() - started
    result = contract(results)
    text = summary(result)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results | {"summary": text}, indent=1))
    print(text)
    print(f"({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
