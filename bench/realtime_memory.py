"""Where the bytes of an idle WebSocket go: one Chorus realtime replica, profiled in-process.

The replica runs in this process (uvloop, the service's own uvicorn options); the lean load
generator (``peers/wsload.py``) opens N idle connections from another process (rooms of
100 users, authenticated, in presence, subscribed — the same shape as the fan-out bench).
Printed per connection:

- RSS delta (what the fan-out bench reports; includes allocator fragmentation),
- net Python heap delta by tracemalloc (``--trace``: slower, so use fewer connections),
  diffed between two snapshots and grouped by source line and by file,
- objects per connection by type (``gc.get_objects()`` counts, before vs after),
- asyncio tasks per connection, and ``sys.getsizeof`` of the per-connection objects,
- objects left to the cyclic collector per closed connection (reference cycles).

Run: ``.venv/bin/python bench/realtime_memory.py [--connections 2000] [--trace]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import uvloop

from chorus_common.redis_client import create_redis
from chorus_common.rooms import RoomDirectory
from chorus_common.server import DrainingServer, uvicorn_config
from chorus_common.tokens import TokenService
from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningRedis
from chorus_realtime.main import create_app, server_options
from chorus_realtime.settings import RealtimeSettings

ROOT = Path(__file__).resolve().parent
SECRET = "bench-secret-that-is-long-enough-for-hs256-keys"


def _targets(port: int, n: int, tokens: TokenService, first_user: int) -> list[dict[str, Any]]:
    return [
        {
            "host": "127.0.0.1",
            "port": port,
            "path": f"/ws/idle-{i // 100}",
            "headers": [
                f"Sec-WebSocket-Protocol: chorus.v1, bearer.{tokens.issue(str(first_user + i))}"
            ],
        }
        for i in range(n)
    ]


class Load:
    """A wsload process holding idle connections until stopped."""

    def __init__(self, targets: list[dict[str, Any]]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({"dialect": "chorus", "targets": targets}, fh)
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "peers" / "wsload.py"), fh.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    async def ready(self) -> int:
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            msg = "load generator failed"
            raise RuntimeError(msg)
        return int(json.loads(line)["ready"])

    async def stop(self) -> None:
        self.proc.kill()
        await asyncio.to_thread(self.proc.wait)


def _type_counts() -> Counter[str]:
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        t = type(obj)
        counts[f"{t.__module__}.{t.__qualname__}"] += 1
    return counts


def _per_connection_sizes(server: DrainingServer) -> dict[str, int]:
    """``sys.getsizeof`` of the objects one connection owns (shallow, as Python reports)."""
    sizes: dict[str, int] = {}
    protocol = next(iter(server.server_state.connections), None)
    if protocol is None:
        return sizes

    def add(name: str, obj: object) -> None:
        if obj is not None:
            sizes[name] = sys.getsizeof(obj)
            inner = getattr(obj, "__dict__", None)
            if inner is not None:
                sizes[name + ".__dict__"] = sys.getsizeof(inner)

    add("protocol", protocol)
    for attr in ("conn", "queue", "writable", "scope", "request", "response", "frames"):
        add(f"protocol.{attr}", getattr(protocol, attr, None))
    conn = getattr(protocol, "conn", None)
    if conn is not None:
        for attr in ("reader", "parser", "events", "writes", "handshake_exc", "logger"):
            add(f"protocol.conn.{attr}", getattr(conn, attr, None))
        reader = getattr(conn, "reader", None)
        if reader is not None:
            add("protocol.conn.reader.buffer", getattr(reader, "buffer", None))
    return sizes


async def profile(args: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="bench-rtmem-"))
    redis_server = RunningRedis(work / "redis")
    redis_server.start()
    # The room access lists are loaded (none here), as the api says at startup.
    marker = create_redis(redis_server.url, client_name="bench-memory")
    await RoomDirectory(marker).mark_loaded()
    await marker.aclose()
    port = free_port()
    settings = RealtimeSettings(
        env="test",
        jwt_secret=SECRET,
        redis_url=redis_server.url,
        host="127.0.0.1",
        port=port,
        instance_id="mem",
        access_log=False,
        log_level="WARNING",
        max_connections_per_user=100_000,
    )
    app = create_app(settings)
    server = DrainingServer(
        uvicorn_config(app, settings, **server_options(settings)),
        lifecycle=app.state.lifecycle,
        drain_seconds=1.0,
        own_signals=False,
    )
    serving = asyncio.create_task(server.serve())
    tokens = TokenService(secret=SECRET, issuer="chorus")
    process = psutil.Process()
    result: dict[str, Any] = {"connections": args.connections}
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        # Warm up every code path (and its caches) with connections that then go away.
        warm = Load(_targets(port, 200, tokens, 900_000))
        await warm.ready()
        await asyncio.sleep(1.0)
        await warm.stop()
        while server.server_state.connections:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        gc.collect()
        if args.trace:
            tracemalloc.start(args.frames)
        tasks0 = len(asyncio.all_tasks())
        counts0 = _type_counts()
        snap0 = tracemalloc.take_snapshot() if args.trace else None
        rss0 = process.memory_info().rss
        load = Load(_targets(port, args.connections, tokens, 100_000))
        ready = await load.ready()
        await asyncio.sleep(args.settle)
        rss1 = process.memory_info().rss
        gc.collect()
        rss2 = process.memory_info().rss
        n = ready
        result["ready"] = ready
        result["rss_delta_per_conn"] = (rss1 - rss0) / n
        result["rss_delta_per_conn_after_gc"] = (rss2 - rss0) / n
        result["tasks_per_conn"] = (len(asyncio.all_tasks()) - tasks0) / n
        counts1 = _type_counts()
        diff = {k: (counts1[k] - counts0.get(k, 0)) / n for k in counts1}
        result["objects_per_conn"] = dict(
            sorted(((k, v) for k, v in diff.items() if v >= 0.5), key=lambda kv: -kv[1])
        )
        result["sizes"] = _per_connection_sizes(server)
        if snap0 is not None:
            snap1 = tracemalloc.take_snapshot()
            filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
            snap0, snap1 = snap0.filter_traces(filters), snap1.filter_traces(filters)
            stats = snap1.compare_to(snap0, "lineno")
            result["traced_per_conn"] = sum(s.size_diff for s in stats) / n
            result["top_lines"] = [
                (str(s.traceback), round(s.size_diff / n, 1), round(s.count_diff / n, 2))
                for s in stats[: args.top]
            ]
            by_file = snap1.compare_to(snap0, "filename")
            result["top_files"] = [
                (str(s.traceback), round(s.size_diff / n, 1)) for s in by_file[: args.top]
            ]
            if args.frames > 1:
                tb = snap1.compare_to(snap0, "traceback")
                result["top_tracebacks"] = [
                    (s.traceback.format()[-2 * args.frames :], round(s.size_diff / n, 1))
                    for s in tb[:15]
                ]
        # What closing leaves to the cyclic collector (the rest is freed by refcounting).
        gc.collect()
        gc.disable()
        await load.stop()
        while server.server_state.connections:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        result["cyclic_garbage_per_closed_conn"] = gc.collect() / n
        gc.enable()
    finally:
        server.should_exit = True
        await serving
        redis_server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--trace", action="store_true", help="tracemalloc (slower)")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames per trace")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle before measuring")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = uvloop.run(profile(args))
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
