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
memory run at 5,000 connections); ``--long`` is the slower version (5 runs, 4 s, bursts of
200 for every system, 2 memory runs at 10,000 connections). ``--json-out PATH`` writes
the bench contract (rows: figure, peer, Chorus, ratio, target, met; latency samples for
the plots); ``--out PATH`` every raw measurement.

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
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from realtime_support import (
    BIG_QUEUE,
    PEERS,
    ROOT,
    SECRET,
    SETTLE_S,
    ChorusPublisher,
    Load,
    ManagerPublisher,
    PipePublisher,
    Procs,
    Profiler,
    Publisher,
    ServerLatency,
    Split,
    bench_main,
    chorus_targets,
    cpu_seconds,
    cpu_split_seconds,
    median,
    peer_python,
    pooled,
    processes,
    raise_fd_limit,
    redis_pid,
    row,
    rss,
    settled_rss,
    spread,
    start_chorus,
    start_peer,
    start_replicas,
    start_together,
    wait_delivered,
)

from chorus_common.events import EventBus
from chorus_common.redis_client import create_redis
from chorus_common.tokens import TokenService
from chorus_devstack.servers import RunningRedis


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


#: Longest wait for one message to reach every subscriber in a windowed run (else: lost).
WINDOW_PATIENCE_S = 10.0


async def one_window(
    load: Load,
    publisher: Publisher,
    window: int,
    seconds: float,
    servers: Sequence[int],
    infrastructure: Sequence[int],
    *,
    settle: bool = True,
) -> dict[str, Any]:
    """``window`` messages in flight for ``seconds``: the next is published the moment the
    last subscriber got an earlier one (the load generator says so on its notify pipe).

    CPU per delivery counts the servers and what they need (Redis): the cost of a delivery.
    Without ``settle`` it starts at once: right after a windowed run that lost nothing,
    every message has reached every subscriber, so no tail is left to settle.
    """
    if settle:
        await asyncio.sleep(SETTLE_S)
    load.ask("report")
    load.ask("track")
    everything = [*servers, *infrastructure]
    cpu0, t0 = cpu_seconds(everything), time.monotonic()
    user0, sys0 = cpu_split_seconds(servers)
    deadline = t0 + seconds
    published = completed = 0
    while published < window:
        await publisher.one()
        published += 1
    lost = False
    while completed < published:
        try:
            completed = await load.completed(WINDOW_PATIENCE_S)
        except TimeoutError:
            lost = True
            break
        if time.monotonic() < deadline:
            await publisher.one()
            published += 1
    cpu1, t1 = cpu_seconds(everything), time.monotonic()
    user1, sys1 = cpu_split_seconds(servers)
    report = load.ask(f"report {SAMPLES_PER_RUN}")
    delivered = max(1, report["messages"])
    return {
        "window": window,
        "published": published,
        "completed": completed,
        "lost": lost,
        "delivered": report["messages"],
        "deliveries_per_s": report["messages"] / (t1 - t0),
        "cpu_us_per_delivery": (cpu1 - cpu0) / delivered * 1e6,
        "server_cpu_us_per_delivery": (user1 - user0 + sys1 - sys0) / delivered * 1e6,
        "server_user_us_per_delivery": (user1 - user0) / delivered * 1e6,
        "server_system_us_per_delivery": (sys1 - sys0) / delivered * 1e6,
        "cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "frames_per_read": report["frames"] / max(1, report["reads"]),
        "p50_ms": report["p50_ms"],
        "p99_ms": report["p99_ms"],
        "samples_ms": report["samples_ms"],
    }


async def windowed(
    name: str,
    load: Load,
    publisher: Publisher,
    servers: Sequence[int],
    infrastructure: Sequence[int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Windowed runs (``--windows``), ``--runs`` each, window sizes alternating run by run."""
    profiler = Profiler(args.py_spy, args.profile_dir, native=args.native)
    if args.profile_window:
        profiler.start(f"{name.split(maxsplit=1)[0]}-window", [*servers, *infrastructure])
    runs: dict[int, list[dict[str, Any]]] = {w: [] for w in args.windows}
    settle = True
    for i in range(args.runs):
        for w in args.windows if i % 2 == 0 else args.windows[::-1]:
            one = await one_window(
                load, publisher, w, args.window_seconds, servers, infrastructure, settle=settle
            )
            runs[w].append(one)
            settle = one["lost"]
    profiler.stop()
    result: dict[str, Any] = {}
    for w, measured in runs.items():
        result[str(w)] = {
            "deliveries_per_s": spread([r["deliveries_per_s"] for r in measured]),
            "cpu_us_per_delivery": spread([r["cpu_us_per_delivery"] for r in measured]),
            **{
                key: spread([r[key] for r in measured])
                for key in (
                    "server_cpu_us_per_delivery",
                    "server_user_us_per_delivery",
                    "server_system_us_per_delivery",
                )
            },
            "cpu_share": spread([r["cpu_share"] for r in measured]),
            "frames_per_read": spread([r["frames_per_read"] for r in measured]),
            "p50_ms": spread([r["p50_ms"] for r in measured]),
            "p99_ms": spread([r["p99_ms"] for r in measured]),
            "samples_ms": pooled([r["samples_ms"] for r in measured]),
            "lost_runs": sum(r["lost"] for r in measured),
            "runs": [{k: v for k, v in r.items() if k != "samples_ms"} for r in measured],
        }
        shown = {k: v for k, v in result[str(w)].items() if k not in {"samples_ms", "runs"}}
        print(json.dumps({"system": name, "window": w, **shown}), flush=True)
    return result


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
    infrastructure: Sequence[int] = (),
) -> dict[str, Any]:
    """Bursts (max rate), paced runs at half the median max rate, then windowed runs.

    With ``extra``, each paced run is followed by two more with one extra client in the
    room: one where it has stopped reading (stalled), one where it reads (the control: same
    clients, same join and leave), in alternating order so drift in the machine's load
    hits both alike. ``infrastructure`` (Redis) counts in the windowed runs' CPU.
    """
    n = args.subscribers
    started = time.monotonic()
    await asyncio.sleep(SETTLE_S)  # let join/connect chatter settle
    if "window" in args.only:  # the windowed runs alone
        windows = await windowed(name, load, publisher, servers, infrastructure, args)
        return {"system": name, "burst": burst, "windows": windows}
    bursts = [await one_burst(load, publisher, servers, burst, n) for _ in range(args.runs)]
    rate = spread([b["deliveries_per_s"] for b in bursts])
    half = rate["median"] / n / 2
    profiler = Profiler(None if args.profile_window else args.py_spy, args.profile_dir)
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
    windows = await windowed(name, load, publisher, servers, infrastructure, args)
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
        "windows": windows,
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


async def bench_chorus(
    args: argparse.Namespace, split: Split, redis: RunningRedis, bus: EventBus, work: Path
) -> dict[str, Any]:
    tokens = TokenService(secret=SECRET, issuer="chorus")
    n = args.subscribers
    results: dict[str, Any] = {}
    # The peers after it read none of its keys: no graceful drain of its sockets at the end.
    with processes(kill=True) as started:
        (p1, s1), (p2, s2) = await start_replicas(
            started, split, redis.url, ["bench-1", "bench-2"], work, **BIG_QUEUE
        )
        users = [str(10_000 + i) for i in range(n)]
        load = Load(
            {
                "dialect": "chorus",
                "targets": chorus_targets([p1, p2], "fan", users, tokens),
                "sample_every": args.sample_every,
            },
            started,
            split,
            notify=True,
        )
        await asyncio.to_thread(load.ready)
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
            "chorus",
            load,
            publisher,
            servers,
            args,
            histogram,
            burst=args.burst,
            extra=extra,
            infrastructure=[redis_pid(redis)],
        )
    return results


async def bench_socketio(
    args: argparse.Namespace, split: Split, redis: RunningRedis, python: str, work: Path
) -> dict[str, Any]:
    n = args.subscribers
    with processes() as started:
        env = {"REDIS_URL": redis.url}
        (q1, t1), (q2, t2) = await start_together(
            *(
                partial(
                    start_peer,
                    started,
                    split,
                    "socketio_server.py",
                    work / f"sio-{i}.log",
                    python=python,
                    **env,
                )
                for i in (1, 2)
            )
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
            notify=True,
        )
        with split.unpinned([t1.pid, t2.pid, redis_pid(redis)]):
            await asyncio.to_thread(load.ready)
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
            infrastructure=[redis_pid(redis)],
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
            notify=True,
        )
        with split.unpinned([manager.pid]):
            await asyncio.to_thread(load.ready)
        publisher = ManagerPublisher(f"ws://127.0.0.1:{port}/ws/0")
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
    time, each server and load generator free to use every CPU. Connecting the sockets is
    nearly all of this part's time, hence 5,000 by default (``--idle``); Chorus at 10,000
    on one replica is ``realtime_storm``'s memory row.
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
            grown = await settled_rss(server) - before
            # Per socket still open: a replica short of CPU may close some it accepted.
            live = int((await asyncio.to_thread(load.ask, "peek"))["open"])
            if live < idle:
                print(f"{dialect}: {idle - live} of {idle} idle sockets closed", flush=True)
            return float(grown) / max(live, 1)

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
    raise_fd_limit()
    split.pin_load(os.getpid())
    python = peer_python()
    work = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "subscribers": args.subscribers,
        "burst": args.burst,
        "half_seconds": args.half_seconds,
        "windows": args.windows,
        "window_seconds": args.window_seconds,
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
    peers = bool({"fanout", "window"} & set(args.only)) and "chorus" not in args.only
    try:
        if {"fanout", "chorus", "window"} & set(args.only):
            results |= await bench_chorus(args, split, redis_server, bus, work)
        if peers:
            results["socketio"] = await bench_socketio(args, split, redis_server, python, work)
            results["manager"] = await bench_manager(args, split, work)
        if "memory" in args.only:
            results["memory"] = await idle_memory(args, split, redis_server.url, python, work)
    finally:
        await redis.aclose()
        redis_server.stop()
    results["loadavg_after"] = os.getloadavg()
    return results


# -- the result (bench JSON contract) -------------------------------------------------------


#: Why the quarter-of-the-ConnectionManager target at one message in flight is out of reach.
SEND_FLOOR = (
    "; at one message in flight every delivery is a send(2) of its own, and py-spy --native "
    "puts ~77% of the replicas' samples in write(2) (the loopback send, which also runs the "
    "receiver's side) and the Python delivery path at ~1 us: a bare uvloop loop writing the "
    "same frame costs ~8 us per write here, half the ConnectionManager's whole cost "
    "(services/realtime/README.md, Paced load)"
)


#: The windowed figures' peers: (label, key in the results).
WINDOW_PEERS = (
    ("python-socketio + AsyncRedisManager (2 processes)", "socketio"),
    ("in-process ConnectionManager (1 process)", "manager"),
)


def stat_ratio(mine: dict[str, Any], theirs: dict[str, Any] | None, field: str) -> float | None:
    """Chorus's median over the peer's, for one field of two result dicts."""
    mine_value = median(mine[field])
    peer_value = median(theirs[field]) if theirs else None
    return mine_value / peer_value if mine_value and peer_value else None


def window_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the windowed runs: rate, CPU per delivery, p50 and p99, per window size."""
    c = r.get("chorus")
    rows: list[dict[str, Any]] = []
    if c is None:
        return rows
    subs = f"1 room x {r['subscribers']:,} subscribers"
    runs = f"median (min-max) of {r['runs']} run(s) of {r['window_seconds']:g} s"
    for w in r.get("windows", []):
        mine = c["windows"].get(str(w))
        if mine is None:
            continue
        label = f"{w} message{'s' if w > 1 else ''} in flight"
        for peer, key in WINDOW_PEERS:
            theirs = (r.get(key) or {}).get("windows", {}).get(str(w))
            is_manager = key == "manager"
            cpu_ratio = stat_ratio(mine, theirs, "cpu_us_per_delivery")
            split = (
                f"Chorus {median(mine['server_user_us_per_delivery']) or 0:.1f} us user + "
                f"{median(mine['server_system_us_per_delivery']) or 0:.1f} us system in its "
                "replicas, the rest Redis"
            )
            if theirs:
                split += (
                    f"; peer {median(theirs['server_user_us_per_delivery']) or 0:.1f} us user + "
                    f"{median(theirs['server_system_us_per_delivery']) or 0:.1f} us system"
                )
            if is_manager:
                cpu_target = "<= 0.25x" if w == 1 else "(reference)"
                cpu_met = (cpu_ratio is not None and cpu_ratio <= 0.25) if w == 1 else None
            else:
                cpu_target, cpu_met = "<= 0.5x", cpu_ratio is not None and cpu_ratio <= 0.5
            p99 = median(mine["p99_ms"])
            rows += [
                row(
                    f"Fan-out deliveries/s, {subs}, {label}",
                    peer,
                    theirs["deliveries_per_s"] if theirs else None,
                    mine["deliveries_per_s"],
                    "deliveries/s",
                    "(reference)",
                    None,
                    note=f"the next message published the moment the last subscriber got "
                    "one, so the rate is one round trip through Redis, the servers, the load "
                    f"generator and the publisher per message (or {w}); wall clock; {runs}",
                ),
                row(
                    f"Server CPU per delivery, {subs}, {label}",
                    peer,
                    theirs["cpu_us_per_delivery"] if theirs else None,
                    mine["cpu_us_per_delivery"],
                    "us",
                    cpu_target,
                    cpu_met,
                    note="user + system CPU of the servers and Redis / deliveries; "
                    f"{split}; frames per read at the client: Chorus "
                    f"{median(mine['frames_per_read']) or 0:.2f}; {runs}"
                    + (SEND_FLOOR if is_manager and w == 1 else ""),
                ),
                row(
                    f"Publish->deliver p50, {subs}, {label}",
                    peer,
                    theirs["p50_ms"] if theirs else None,
                    mine["p50_ms"],
                    "ms",
                    "info",
                    None,
                    note=f"every {r['latency_sampled_every']}th subscriber timed; {runs}",
                ),
                row(
                    f"Publish->deliver p99, {subs}, {label}",
                    peer,
                    theirs["p99_ms"] if theirs else None,
                    mine["p99_ms"],
                    "ms",
                    "<= 50 ms",
                    p99 is not None and p99 <= 50,
                    note=f"every {r['latency_sampled_every']}th subscriber timed; {runs}",
                ),
            ]
    return rows


def contract(r: dict[str, Any]) -> dict[str, Any]:
    """The bench JSON contract: rows (figure, peer, Chorus, ratio, target, met) + samples."""
    c, s, manager, mem = r.get("chorus"), r.get("socketio"), r.get("manager"), r.get("memory")
    runs = f"median (min-max) of {r['runs']} run(s)"
    subs = f"1 room x {r['subscribers']:,} subscribers"
    rows: list[dict[str, Any]] = []
    peers = [("python-socketio + AsyncRedisManager (2 processes)", s)]
    peers.append(("in-process ConnectionManager (1 process)", manager))
    bursts = c is not None and "deliveries_per_s" in c  # not with --only window
    for peer, p in peers:
        if c is None or p is None or not bursts:
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
    if c is not None and bursts:
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
                    p.get("half_p99_ms") if p else None,
                    c["half_p99_ms"],
                    "ms",
                    "<= 50 ms",
                    p99 is not None and p99 <= 50,
                    note=f"Chorus at {c['half_rate_msgs_per_s']:,.0f} msgs/s "
                    f"({c['half_rate_msgs_per_s'] * r['subscribers']:,.0f} deliveries/s)"
                    + (
                        f", peer at {p['half_rate_msgs_per_s']:,.0f} msgs/s "
                        f"({p['half_rate_msgs_per_s'] * r['subscribers']:,.0f} deliveries/s)"
                        if p and "half_rate_msgs_per_s" in p
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
    rows += window_rows(r)
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
                f"{mem['runs']} run(s)"
                + (
                    f"; {mem['idle_connections']:,} rather than 10,000 to keep the run "
                    "short: connecting them is nearly all of its time (`--idle 10000` or "
                    "`--long` for 10,000; Chorus at 10,000 on one replica: realtime_storm)"
                    if mem["idle_connections"] < LONG["idle"]
                    else ""
                ),
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
    for w in r.get("windows", []):
        by_system = {
            name: system["windows"][str(w)]["samples_ms"]
            for name, system in (
                ("Chorus", c),
                ("python-socketio", s),
                ("ConnectionManager", manager),
            )
            if system is not None and str(w) in system.get("windows", {})
        }
        if by_system:
            distributions.append(
                {
                    "title": f"Publish->deliver latency, {w} message(s) in flight "
                    "(the next published when the last subscriber got one)",
                    "unit": "ms",
                    "series": by_system,
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


#: ``--long``: the figures as measured before the 2-minute budget (about 6 minutes).
LONG = {
    "runs": 5,
    "half_seconds": 4.0,
    "burst": 200,
    "socketio_burst": 200,
    "manager_burst": 200,
    "memory_runs": 2,
    "idle": 10_000,
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
        default=25,
        help="messages per python-socketio burst (it delivers ~50x slower: ~3 s each)",
    )
    parser.add_argument(
        "--manager-burst", type=int, default=100, help="messages per ConnectionManager burst"
    )
    parser.add_argument("--half-seconds", type=float, default=2.0, help="length of a paced run")
    parser.add_argument(
        "--windows",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[1, 5],
        help="messages in flight in the windowed runs (comma-separated; empty: none)",
    )
    parser.add_argument(
        "--window-seconds", type=float, default=2.0, help="length of a windowed run"
    )
    parser.add_argument(
        "--native", action="store_true", help="with --py-spy: native frames too (py-spy --native)"
    )
    parser.add_argument(
        "--profile-window",
        action="store_true",
        help="with --py-spy: profile the windowed runs (servers and Redis), not the paced ones",
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions per fan-out figure")
    parser.add_argument(
        "--sample-every",
        type=int,
        default=4,
        help="latency measured on every k-th subscriber (all are counted), same for every system",
    )
    parser.add_argument(
        "--idle", type=int, default=5_000, help="idle connections per system (memory figure)"
    )
    parser.add_argument("--memory-runs", type=int, default=1)
    parser.add_argument(
        "--long",
        action="store_true",
        help="the long version: 5 runs of 4 s paced runs, bursts of 200 for every system, "
        "2 memory runs at 10,000 connections (overrides those flags)",
    )
    parser.add_argument("--server-cpus", help="e.g. 0 (default: the first CPU)")
    parser.add_argument("--load-cpus", help="e.g. 1 (default: the other CPUs)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["fanout", "chorus", "window", "memory"],
        default=["fanout", "memory"],
        help="chorus: Chorus's figures alone (no peers); window: the windowed runs alone",
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
    bench_main(args, run, contract)


if __name__ == "__main__":
    main()
