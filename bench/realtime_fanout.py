"""Fan-out benchmark: Chorus realtime against python-socketio and the seed's ConnectionManager.

One run, same machine, same load generator (``peers/wsload.py``, a lean uvloop client in
its own process):

1. 1 room x SUBSCRIBERS subscribers — over 2 Chorus replicas, over 2 python-socketio
   processes (AsyncRedisManager), and on the seed's single process — then a burst of
   BURST messages published as fast as the publisher can: deliveries/s (wall clock) and
   deliveries per server CPU-second ("per core").
2. Publish→deliver p50/p99 at half of each system's measured max rate.
3. Chorus: the same half-rate p99 with one stalled client (stops reading) in the room.
4. Memory per idle WebSocket: RSS delta / connections at IDLE connections on one Chorus
   replica (rooms of 100 users) and one python-socketio process.

The peers live in their own venv (``bench/.venvs/realtime-peers``, made with uv). Numbers
on a shared 2-core machine are noisy: the CPU split is printed. Run:
``.venv/bin/python bench/realtime_fanout.py [--subscribers 1000] [--idle 10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import connect

from chorus_common.events import EventBus, room_channel
from chorus_common.redis_client import create_redis
from chorus_common.tokens import TokenService
from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningRedis

ROOT = Path(__file__).resolve().parent
PEERS = ROOT / "peers"
VENV = ROOT / ".venvs" / "realtime-peers"
SECRET = "bench-secret-that-is-long-enough-for-hs256-keys"
PEER_PACKAGES = ["python-socketio>=5.11", "redis>=5", "uvicorn[standard]>=0.30", "orjson"]


def peer_python() -> str:
    """The peers' interpreter, creating their venv on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["uv", "venv", "--python", sys.executable, str(VENV)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "--python", str(python), *PEER_PACKAGES], check=True
        )
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
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
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
    started: list[subprocess.Popen[bytes]], redis_url: str, name: str, log: Path, **env: str
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
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return port, proc


def start_peer(
    started: list[subprocess.Popen[bytes]],
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
    wait_port(port)
    return port, proc


class Load:
    """A wsload process."""

    def __init__(self, job: dict[str, Any], started: list[subprocess.Popen[bytes]]) -> None:
        self.file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        json.dump(job, self.file)
        self.file.close()
        self.proc = subprocess.Popen(
            [sys.executable, str(PEERS / "wsload.py"), self.file.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        started.append(self.proc)

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


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for proc in procs:
        times = psutil.Process(proc.pid).cpu_times()
        total += times.user + times.system
    return total


def rss(proc: subprocess.Popen[bytes]) -> int:
    return int(psutil.Process(proc.pid).memory_info().rss)


async def wait_delivered(load: Load, expected: int, *, quiet: float = 3.0) -> None:
    last_count, last_change = -1, time.monotonic()
    while True:
        await asyncio.sleep(0.25)
        count = (await asyncio.to_thread(load.ask, "peek"))["messages"]
        if count >= expected:
            return
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return


class Publisher:
    """Publishes ``{"message", "n", "t"}`` through each system's own publishing path."""

    async def burst(self, count: int) -> None:
        raise NotImplementedError

    async def rate(self, per_second: float, seconds: float) -> None:
        raise NotImplementedError


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
        start = time.time()
        for i in range(int(per_second * seconds)):
            delay = start + i / per_second - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._one()


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
    """A WebSocket client of the seed: whatever it sends is broadcast."""

    def __init__(self, url: str) -> None:
        self.url, self.n, self.ws = url, 0, None

    async def open(self) -> None:
        self.ws = await connect(self.url, max_queue=None)  # type: ignore[assignment]

    async def _one(self) -> None:
        self.n += 1
        await self.ws.send(json.dumps({"message": "x" * 64, "n": self.n, "t": time.time()}))  # type: ignore[attr-defined]

    async def burst(self, count: int) -> None:
        for _ in range(count):
            await self._one()

    async def rate(self, per_second: float, seconds: float) -> None:
        start = time.time()
        for i in range(int(per_second * seconds)):
            delay = start + i / per_second - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._one()


async def fanout(
    name: str,
    load: Load,
    publisher: Publisher,
    servers: list[subprocess.Popen[bytes]],
    subscribers: int,
    burst: int,
    half_seconds: float,
) -> dict[str, Any]:
    await asyncio.sleep(1.0)  # let join/connect chatter settle
    load.ask("report")
    cpu0 = cpu_seconds(servers)
    await publisher.burst(burst)
    await wait_delivered(load, burst * subscribers)
    cpu1 = cpu_seconds(servers)
    full = load.ask("report")
    span = max(1e-6, full["last"] - full["first"])
    rate = full["messages"] / span
    per_core = full["messages"] / max(1e-6, cpu1 - cpu0)
    half = rate / subscribers / 2
    await publisher.rate(half, half_seconds)
    await wait_delivered(load, int(half * half_seconds) * subscribers)
    slow = load.ask("report")
    result = {
        "system": name,
        "delivered": full["messages"],
        "expected": burst * subscribers,
        "deliveries_per_s": rate,
        "deliveries_per_cpu_s": per_core,
        "server_cpu_s": cpu1 - cpu0,
        "burst_p50_ms": full["p50_ms"],
        "burst_p99_ms": full["p99_ms"],
        "half_rate_msgs_per_s": half,
        "half_p50_ms": slow["p50_ms"],
        "half_p99_ms": slow["p99_ms"],
        "half_delivered": slow["messages"],
    }
    print(json.dumps(result), flush=True)
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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    python = peer_python()
    tokens = TokenService(secret=SECRET, issuer="chorus")
    work = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    results: dict[str, Any] = {"subscribers": args.subscribers, "burst": args.burst}
    redis_server = RunningRedis(work / "redis")
    redis_server.start()
    redis = create_redis(redis_server.url, client_name="bench")
    bus = EventBus(redis)
    n = args.subscribers
    try:
        # -- Chorus: 2 replicas --------------------------------------------------------------
        with processes() as started:
            big_queue = {
                "SEND_QUEUE_MAX_MESSAGES": "100000",
                "SEND_QUEUE_MAX_BYTES": "100000000",
                "MAX_CONNECTIONS_PER_USER": "100000",
            }
            p1, s1 = start_chorus(
                started, redis_server.url, "bench-1", work / "chorus-1.log", **big_queue
            )
            p2, s2 = start_chorus(
                started, redis_server.url, "bench-2", work / "chorus-2.log", **big_queue
            )
            users = [str(10_000 + i) for i in range(n)]
            load = Load(
                {"dialect": "chorus", "targets": chorus_targets([p1, p2], "fan", users, tokens)},
                started,
            )
            load.ready()
            results["chorus"] = await fanout(
                "chorus",
                load,
                ChorusPublisher(bus, "fan"),
                [s1, s2],
                n,
                args.burst,
                args.half_seconds,
            )
            # One stalled client in the same room, at the same half rate.
            stalled = Load(
                {
                    "dialect": "chorus",
                    "stall": 1,
                    "targets": chorus_targets([p1], "fan", ["99999"], tokens),
                },
                started,
            )
            stalled.ready()
            await asyncio.sleep(1.0)
            load.ask("report")
            half = results["chorus"]["half_rate_msgs_per_s"]
            await ChorusPublisher(bus, "fan").rate(half, args.half_seconds)
            await wait_delivered(load, int(half * args.half_seconds) * n)
            with_stall = load.ask("report")
            # And again without it, so noise shows: the baseline is the mean of both runs.
            stalled.proc.kill()
            await asyncio.sleep(1.0)
            load.ask("report")
            await ChorusPublisher(bus, "fan").rate(half, args.half_seconds)
            await wait_delivered(load, int(half * args.half_seconds) * n)
            again = load.ask("report")
            baseline = (results["chorus"]["half_p99_ms"] + again["p99_ms"]) / 2
            results["chorus_stalled"] = {
                "half_p50_ms": with_stall["p50_ms"],
                "half_p99_ms": with_stall["p99_ms"],
                "delivered": with_stall["messages"],
                "baseline_p99_ms": baseline,
                "baseline_runs_p99_ms": [results["chorus"]["half_p99_ms"], again["p99_ms"]],
            }
            print(json.dumps({"chorus_with_stalled_client": results["chorus_stalled"]}), flush=True)

        # -- python-socketio: 2 processes with AsyncRedisManager --------------------------------
        with processes() as started:
            env = {"REDIS_URL": redis_server.url}
            q1, t1 = start_peer(
                started, "socketio_server.py", work / "sio-1.log", python=python, **env
            )
            q2, t2 = start_peer(
                started, "socketio_server.py", work / "sio-2.log", python=python, **env
            )
            targets = [
                {
                    "host": "127.0.0.1",
                    "port": (q1, q2)[i % 2],
                    "path": "/socket.io/?EIO=4&transport=websocket",
                }
                for i in range(n)
            ]
            load = Load({"dialect": "socketio", "targets": targets}, started)
            load.ready()
            pub = subprocess.Popen(
                [python, str(PEERS / "socketio_publisher.py")],
                env={**os.environ, **env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            started.append(pub)
            results["socketio"] = await fanout(
                "python-socketio",
                load,
                PipePublisher(pub),
                [t1, t2],
                n,
                args.burst,
                args.half_seconds,
            )

        # -- the seed's ConnectionManager: one process ----------------------------------------
        with processes() as started:
            port, seed = start_peer(started, "seed_server.py", work / "seed.log")
            targets = [{"host": "127.0.0.1", "port": port, "path": f"/ws/{i}"} for i in range(n)]
            load = Load({"dialect": "seed", "targets": targets}, started)
            load.ready()
            publisher = SeedPublisher(f"ws://127.0.0.1:{port}/ws/0")
            await publisher.open()
            results["seed"] = await fanout(
                "seed ConnectionManager", load, publisher, [seed], n, args.burst, args.half_seconds
            )

        # -- memory per idle connection --------------------------------------------------------
        idle = args.idle
        with processes() as started:
            port, server = start_chorus(
                started,
                redis_server.url,
                "bench-mem",
                work / "chorus-mem.log",
                MAX_CONNECTIONS_PER_USER="100000",
            )
            before = rss(server)
            users = [str(50_000 + i) for i in range(idle)]
            targets = []
            for i, user in enumerate(users):
                targets += chorus_targets([port], f"idle-{i // 100}", [user], tokens)
            load = Load({"dialect": "chorus", "targets": targets}, started)
            load.ready()
            await asyncio.sleep(3.0)
            results["chorus_memory_bytes_per_conn"] = (rss(server) - before) / idle
        with processes() as started:
            port, server = start_peer(
                started,
                "socketio_server.py",
                work / "sio-mem.log",
                python=python,
                REDIS_URL=redis_server.url,
            )
            before = rss(server)
            targets = [
                {"host": "127.0.0.1", "port": port, "path": "/socket.io/?EIO=4&transport=websocket"}
                for _ in range(idle)
            ]
            load = Load({"dialect": "socketio", "targets": targets}, started)
            load.ready()
            await asyncio.sleep(3.0)
            results["socketio_memory_bytes_per_conn"] = (rss(server) - before) / idle
        results["idle_connections"] = idle
    finally:
        await redis.aclose()
        redis_server.stop()
    return results


def summary(r: dict[str, Any]) -> str:
    c, s, seed = r["chorus"], r["socketio"], r["seed"]
    stalled = r["chorus_stalled"]
    kib = 1024
    mem_c, mem_s = r["chorus_memory_bytes_per_conn"], r["socketio_memory_bytes_per_conn"]
    per_core = c["deliveries_per_cpu_s"] / s["deliveries_per_cpu_s"]
    lines = [
        f"Fan-out: 1 room x {r['subscribers']} subscribers, burst of {r['burst']} messages "
        f"(2 CPU cores shared by servers, Redis, load generator and publisher: noisy)",
        "",
        "| figure | python-socketio | seed ConnectionManager | Chorus | Chorus/socketio | target |",
        "|---|---|---|---|---|---|",
        f"| deliveries/s (wall) | {s['deliveries_per_s']:,.0f} | {seed['deliveries_per_s']:,.0f} | "
        f"{c['deliveries_per_s']:,.0f} | "
        f"{c['deliveries_per_s'] / s['deliveries_per_s']:.2f}x | >= 2x |",
        f"| deliveries per server CPU-second | {s['deliveries_per_cpu_s']:,.0f} | "
        f"{seed['deliveries_per_cpu_s']:,.0f} | {c['deliveries_per_cpu_s']:,.0f} | "
        f"{per_core:.2f}x | >= 10,000 |",
        f"| p50 / p99 at half max rate (ms) | {s['half_p50_ms']:.1f} / {s['half_p99_ms']:.1f} | "
        f"{seed['half_p50_ms']:.1f} / {seed['half_p99_ms']:.1f} | "
        f"{c['half_p50_ms']:.1f} / {c['half_p99_ms']:.1f} | | p99 <= 50 |",
        f"| p99 with one stalled client (ms) | | | {stalled['half_p99_ms']:.1f} vs "
        f"{stalled['baseline_p99_ms']:.1f} without "
        f"({stalled['half_p99_ms'] / stalled['baseline_p99_ms'] - 1:+.0%}) | | <= +10% |",
        f"| memory per idle WebSocket at {r['idle_connections']:,} (KiB) | "
        f"{mem_s / kib:.1f} | | {mem_c / kib:.1f} | {mem_c / mem_s:.2f}x | <= 20 KiB |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--half-seconds", type=float, default=4.0)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "realtime_fanout.json")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(summary(results))


if __name__ == "__main__":
    main()
