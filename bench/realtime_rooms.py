"""Many rooms: 10,000 connections in 1,000 rooms of 10, Chorus against python-socketio.

The load chat apps have: many small rooms, messages spread over them. One run, same
machine, same load generator (``peers/wsload.py``), for Chorus (2 replicas, one Redis) and
python-socketio (2 processes, AsyncRedisManager, one Redis); the members of every room
are spread over both processes (5 + 5):

1. **Saturation**: bursts of messages spread round-robin over the rooms (the publisher
   ``--concurrency`` publishes in flight: Chorus's through the EventBus, socket.io's
   through ``AsyncRedisManager.emit(room=...)``), as fast as they are taken; deliveries/s
   from the first delivery to the last, and server CPU (replicas + Redis) per delivery.
2. **Latency at half of it**: messages on a fixed schedule at half each system's median
   saturation rate; publish->deliver p50/p99 (every ``--sample-every``-th connection timed).
3. **Churn**: ``--churners`` more connections (half on each replica) enter and leave rooms
   of their own as fast as they can (``peers/wschurn.py``), each entry and exit a
   SUBSCRIBE / UNSUBSCRIBE of its replica (plus presence and the join/leave events), while
   the 1,000 rooms keep getting messages at a quarter of the saturation rate: entries+exits
   per second, and delivery stays exact — every member of every room gets every message
   once, in order (the messages are numbered per room; the load generator checks them all),
   and a churner re-entering with ``since`` gets what its room got while it was out, once.
   socket.io's rooms live in each process (no Redis subscription per room: every process
   gets every message), so its churn is ``join`` / ``leave`` events.

CPU split: servers + Redis on one CPU, load generators, publishers and the harness on the
other (``realtime_support.Split``). ``--json-out PATH`` writes the bench contract.
Run: ``.venv/bin/python bench/realtime_rooms.py [--json-out PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from realtime_support import (
    BIG_QUEUE,
    SECRET,
    SETTLE_S,
    Generator,
    Load,
    PipePublisher,
    Procs,
    Split,
    bench_main,
    cpu_seconds,
    median,
    paced,
    peer_python,
    pooled,
    processes,
    raise_fd_limit,
    redis_pid,
    row,
    spread,
    start_peer,
    start_publisher,
    start_replicas,
    start_together,
    wait_delivered,
)

from chorus_common.tokens import TokenService
from chorus_devstack.servers import RunningRedis

#: Every figure's latency samples per run kept for the plots.
SAMPLES_PER_RUN = 1000
#: Chorus replicas: any number of frames from a client (churners send two per visit).
CHURN_ENV = {"MESSAGES_PER_SECOND": "100000", "MESSAGE_BURST": "100000"}


class Churn(Generator):
    """A ``peers/wschurn.py`` process: connected at start, churning between begin and end."""

    def __init__(self, job: dict[str, Any], started: Procs, split: Split, python: str) -> None:
        super().__init__("wschurn.py", job, started, split, python=python)

    def ready(self) -> int:
        return int(self.ask("")["ready"])

    def begin(self) -> None:
        self.say("start")

    def end(self) -> dict[str, Any]:
        return self.ask("report")


# -- the phases ----------------------------------------------------------------------------------


async def saturate(
    load: Load, pub: PipePublisher, burst: int, members: int, pids: list[int]
) -> dict[str, Any]:
    """One burst of ``burst`` messages over the rooms; its deliveries/s and CPU/delivery
    (``pids``: the servers, Redis last)."""
    await asyncio.sleep(SETTLE_S)
    load.ask("report")
    cpu0, redis0 = cpu_seconds(pids), cpu_seconds(pids[-1:])
    await pub.burst(burst)
    await wait_delivered(load, burst * members)
    cpu1, redis1 = cpu_seconds(pids), cpu_seconds(pids[-1:])
    report = load.ask("report")
    span = max(1e-6, report["last"] - report["first"])
    delivered = max(1, report["messages"])
    return {
        "delivered": report["messages"],
        "expected": burst * members,
        "deliveries_per_s": report["messages"] / span,
        "cpu_us_per_delivery": (cpu1 - cpu0) / delivered * 1e6,
        "redis_us_per_delivery": (redis1 - redis0) / delivered * 1e6,
    }


async def churn(
    load: Load,
    pub: PipePublisher,
    churners: Churn,
    churn_pub: PipePublisher | None,
    *,
    rate: float,
    seconds: float,
    members: int,
    servers: list[int],
) -> dict[str, Any]:
    """Churners enter and leave rooms while the rooms get ``rate`` messages a second."""
    await asyncio.sleep(SETTLE_S)
    load.ask("verify")
    sides = {
        "servers": servers,
        "load generator": [load.proc.pid],
        "churners": [churners.proc.pid],
        "publishers": [pub.proc.pid] + ([churn_pub.proc.pid] if churn_pub else []),
    }
    cpu0 = {side: cpu_seconds(pids) for side, pids in sides.items()}
    t0 = time.monotonic()
    churners.begin()
    side = (
        [churn_pub.rate(max(1.0, rate / 20), seconds)] if churn_pub is not None else []
    )  # the churners' own rooms get messages too, to be replayed on re-entry
    await asyncio.gather(pub.rate(rate, seconds), *side)
    result = await asyncio.to_thread(churners.end)
    elapsed = time.monotonic() - t0
    result["cpu_share"] = {
        side: round((cpu_seconds(pids) - cpu0[side]) / elapsed, 2) for side, pids in sides.items()
    }
    await wait_delivered(load, int(rate * seconds) * members)
    report = load.ask("report")
    return {
        **result,
        "room_messages_delivered": report["messages"],
        "room_messages_expected": int(rate * seconds) * members,
        "room_missing": report["missing"],
        "room_duplicates": report["duplicates"],
    }


async def system(
    name: str,
    args: argparse.Namespace,
    load: Load,
    pub: PipePublisher,
    churners: Churn,
    churn_pub: PipePublisher | None,
    pids: list[int],
) -> dict[str, Any]:
    """Saturation, half of it, then churn: one system's figures."""
    members = args.members
    saturation = [
        await saturate(
            load, pub, args.burst if name == "chorus" else args.peer_burst, members, pids
        )
        for _ in range(args.runs)
    ]
    rate = spread([s["deliveries_per_s"] for s in saturation])
    msgs_per_s = (rate["median"] or 0) / members
    halves = [
        await paced(load, pub, msgs_per_s / 2, args.seconds, members, samples=SAMPLES_PER_RUN)
        for _ in range(args.runs)
    ]
    churned = await churn(
        load,
        pub,
        churners,
        churn_pub,
        rate=msgs_per_s / 4,
        seconds=args.churn_seconds,
        members=members,
        servers=pids,
    )
    result = {
        "system": name,
        "deliveries_per_s": rate,
        "cpu_us_per_delivery": spread([s["cpu_us_per_delivery"] for s in saturation]),
        "redis_us_per_delivery": spread([s["redis_us_per_delivery"] for s in saturation]),
        "half_rate_msgs_per_s": msgs_per_s / 2,
        "half_p50_ms": spread([h["p50_ms"] for h in halves]),
        "half_p99_ms": spread([h["p99_ms"] for h in halves]),
        "half_samples_ms": pooled([h["samples_ms"] for h in halves]),
        "lost": sum(max(0, s["expected"] - s["delivered"]) for s in saturation)
        + sum(max(0, h["expected"] - h["delivered"]) for h in halves),
        "churn": churned,
    }
    shown = {k: v for k, v in result.items() if k != "half_samples_ms"}
    print(json.dumps(shown), flush=True)
    return result


def room_of(index: int, rooms: int, members: int) -> int:
    """Connection ``index``'s room: members of a room are consecutive (so half per process)."""
    return (index // members) % rooms


async def connect(
    dialect: str,
    targets: list[dict[str, Any]],
    args: argparse.Namespace,
    started: Procs,
    split: Split,
    unpin: list[int],
) -> tuple[Load, float]:
    """A load generator with every target connected, and the seconds that took.

    Connecting is setup, not a figure: meanwhile the processes ``unpin`` may use every
    CPU, then they are pinned back before any measurement. Chorus connects pinned: unpinned
    on a loaded machine, its replicas ran out of Redis pool connections while connecting
    and refused sockets ("Redis unavailable"), which the figures then miss.
    """
    connecting = time.monotonic()
    load = Load(
        {
            "dialect": dialect,
            "targets": targets,
            "sample_every": args.sample_every,
        },
        started,
        split,
    )
    with split.unpinned(unpin):
        await asyncio.to_thread(load.ready)
    return load, time.monotonic() - connecting


async def bench_chorus(
    args: argparse.Namespace, split: Split, redis: RunningRedis, work: Path
) -> dict[str, Any]:
    tokens = TokenService(secret=SECRET, issuer="chorus")
    env = {**BIG_QUEUE, **CHURN_ENV}
    # Nothing after it reads its keys in Redis: no graceful drain of 10,000 sockets.
    with processes(kill=True) as started:
        replicas = await start_replicas(
            started, split, redis.url, ["rooms-1", "rooms-2"], work, **env
        )
        ports, pids = [port for port, _ in replicas], [proc.pid for _, proc in replicas]
        servers = [*pids, redis_pid(redis)]
        connections = args.rooms * args.members
        targets = [
            {
                "host": "127.0.0.1",
                "port": ports[i % 2],
                "path": f"/ws/room-{room_of(i, args.rooms, args.members)}",
                "headers": [
                    f"Sec-WebSocket-Protocol: chorus.v1, bearer.{tokens.issue(str(100_000 + i))}"
                ],
            }
            for i in range(connections)
        ]
        load, connect_s = await connect("chorus", targets, args, started, split, [])
        churners = Churn(
            {
                "dialect": "chorus",
                "targets": [
                    {
                        "host": "127.0.0.1",
                        "port": ports[i % 2],
                        "path": f"/ws/home-{i}",
                        "room": f"churn-{i}",
                        "headers": [
                            "Sec-WebSocket-Protocol: chorus.v1, "
                            f"bearer.{tokens.issue(str(900_000 + i))}"
                        ],
                    }
                    for i in range(args.churners)
                ],
            },
            started,
            split,
            sys.executable,
        )
        await asyncio.to_thread(churners.ready)
        common = ["--concurrency", str(args.concurrency)]
        pub = start_publisher(
            started,
            split,
            sys.executable,
            "chorus_publisher.py",
            {"REDIS_URL": redis.url},
            "--rooms",
            str(args.rooms),
            *common,
        )
        churn_pub = start_publisher(
            started,
            split,
            sys.executable,
            "chorus_publisher.py",
            {"REDIS_URL": redis.url},
            "--rooms",
            str(args.churners),
            "--prefix",
            "churn-",
        )
        result = await system("chorus", args, load, pub, churners, churn_pub, servers)
    return {**result, "connect_s": connect_s}


async def bench_socketio(
    args: argparse.Namespace, split: Split, redis: RunningRedis, python: str, work: Path
) -> dict[str, Any]:
    # Nothing after it reads its keys in Redis: no graceful drain of 10,000 sockets.
    with processes(kill=True) as started:
        peers = await start_together(
            *(
                partial(
                    start_peer,
                    started,
                    split,
                    "socketio_server.py",
                    work / f"sio-{n}.log",
                    python=python,
                    REDIS_URL=redis.url,
                )
                for n in (1, 2)
            )
        )
        ports, pids = [port for port, _ in peers], [proc.pid for _, proc in peers]
        servers = [*pids, redis_pid(redis)]
        path = "/socket.io/?EIO=4&transport=websocket"
        connections = args.rooms * args.members
        targets = [
            {
                "host": "127.0.0.1",
                "port": ports[i % 2],
                "path": path,
                "join": f"room-{room_of(i, args.rooms, args.members)}",
            }
            for i in range(connections)
        ]
        load, connect_s = await connect("socketio", targets, args, started, split, servers)
        churners = Churn(
            {
                "dialect": "socketio",
                "targets": [
                    {"host": "127.0.0.1", "port": ports[i % 2], "path": path, "room": f"churn-{i}"}
                    for i in range(args.churners)
                ],
            },
            started,
            split,
            python,
        )
        with split.unpinned(servers):
            await asyncio.to_thread(churners.ready)
        pub = start_publisher(
            started,
            split,
            python,
            "socketio_publisher.py",
            {"REDIS_URL": redis.url},
            "--rooms",
            str(args.rooms),
            "--concurrency",
            str(args.concurrency),
        )
        result = await system("python-socketio", args, load, pub, churners, None, servers)
    return {**result, "connect_s": connect_s}


async def run(args: argparse.Namespace, split: Split) -> dict[str, Any]:
    raise_fd_limit()
    split.pin_load(os.getpid())
    python = peer_python()
    work = Path(tempfile.mkdtemp(prefix="bench-rooms-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rooms": args.rooms,
        "members": args.members,
        "runs": args.runs,
        "seconds": args.seconds,
        "churners": args.churners,
        "churn_seconds": args.churn_seconds,
        "sample_every": args.sample_every,
        "cpu_split": split.describe(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
    }
    print(f"CPU split: {split.describe()}", flush=True)
    redis = RunningRedis(work / "redis")
    redis.start()
    split.pin_server(redis_pid(redis))
    try:
        if "chorus" in args.systems:
            results["chorus"] = await bench_chorus(args, split, redis, work)
        if "socketio" in args.systems:
            results["socketio"] = await bench_socketio(args, split, redis, python, work)
    finally:
        redis.stop()
    results["loadavg_after"] = os.getloadavg()
    return results


# -- the result (bench JSON contract) -------------------------------------------------------------

PEER = "python-socketio + AsyncRedisManager (2 processes)"


def contract(r: dict[str, Any]) -> dict[str, Any]:
    """The rows (figure, peer, Chorus, ratio, target, met) and the latency samples."""
    c, s = r.get("chorus"), r.get("socketio")
    if c is None:  # the peer alone (--systems socketio): nothing to compare
        return {
            "bench": "realtime_rooms",
            "date": r["date"],
            "cpu_split": r["cpu_split"],
            "rows": [],
        }
    shape = f"{r['rooms'] * r['members']:,} connections in {r['rooms']:,} rooms of {r['members']}"
    runs = f"median (min-max) of {r['runs']} run(s)"
    rate_ratio = (
        (median(c["deliveries_per_s"]) or 0) / (median(s["deliveries_per_s"]) or 1) if s else None
    )
    p99 = median(c["half_p99_ms"])
    churn_c, churn_s = c["churn"], s["churn"] if s else None
    exact = (
        churn_c["room_missing"] == 0
        and churn_c["room_duplicates"] == 0
        and churn_c["missing"] == 0
        and churn_c["duplicates"] == 0
        and churn_c["room_messages_delivered"] == churn_c["room_messages_expected"]
        and not churn_c["errors"]
    )
    ops = 2 * churn_c["visits_per_s"]

    def one(value: float | None) -> dict[str, Any] | None:
        return None if value is None else {"median": value, "min": value, "max": value}

    rows = [
        row(
            f"Deliveries/s at saturation, {shape}, over 2 processes",
            PEER,
            s["deliveries_per_s"] if s else None,
            c["deliveries_per_s"],
            "deliveries/s",
            ">= 2x",
            rate_ratio is not None and rate_ratio >= 2,
            note="bursts spread round-robin over the rooms; first to last delivery; "
            f"Chorus {c['lost']} lost; {runs}",
        ),
        row(
            f"Server CPU per delivery at saturation, {shape}",
            PEER,
            s["cpu_us_per_delivery"] if s else None,
            c["cpu_us_per_delivery"],
            "us",
            "<= 0.5x",
            s is not None
            and (median(c["cpu_us_per_delivery"]) or 0)
            <= 0.5 * (median(s["cpu_us_per_delivery"]) or 0),
            note="user + system CPU of the 2 server processes and Redis / deliveries (Redis: "
            f"Chorus {median(c['redis_us_per_delivery']) or 0:.1f} us"
            + (f", peer {median(s['redis_us_per_delivery']) or 0:.1f} us" if s else "")
            + f"); {runs}",
        ),
        row(
            f"Publish->deliver p99 at half of each system's saturation rate, {shape}",
            PEER,
            s["half_p99_ms"] if s else None,
            c["half_p99_ms"],
            "ms",
            "<= 50 ms",
            p99 is not None and p99 <= 50,
            note=f"Chorus at {c['half_rate_msgs_per_s']:,.0f} msgs/s"
            + (f", peer at {s['half_rate_msgs_per_s']:,.0f} msgs/s" if s else "")
            + f"; p50 Chorus {median(c['half_p50_ms']) or 0:.1f} ms"
            + (f", peer {median(s['half_p50_ms']) or 0:.1f} ms" if s else "")
            + f"; every {r['sample_every']}th connection timed; {runs}",
        ),
        row(
            "Room entries + exits per second, churning, while the rooms get messages",
            f"{PEER}: join/leave events (its rooms need no Redis subscription)",
            one(2 * churn_s["visits_per_s"]) if churn_s else None,
            one(ops),
            "entries+exits/s",
            ">= 1,000/s and 0 lost, 0 duplicated",
            ops >= 1000 and exact,
            note=f"{r['churners']} churners (half per replica), each alone in its room: an "
            "entry is a SUBSCRIBE, presence join and a join event, an exit their reverse; "
            f"{r['churn_seconds']:g} s while the {r['rooms']:,} rooms got "
            f"{c['half_rate_msgs_per_s'] / 2:,.0f} msgs/s: "
            f"{churn_c['room_messages_delivered']:,} of {churn_c['room_messages_expected']:,} "
            f"deliveries, {churn_c['room_missing']} missing, {churn_c['room_duplicates']} "
            f"duplicated (every message's number checked); churners re-entering with since: "
            f"{churn_c['messages_seen']:,} of their rooms' messages, {churn_c['missing']} "
            f"missing, {churn_c['duplicates']} duplicated"
            + (f"; errors: {'; '.join(churn_c['errors'])}" if churn_c["errors"] else ""),
        ),
    ]
    series = {
        name: system["half_samples_ms"]
        for name, system in (("Chorus", c), ("python-socketio", s))
        if system is not None and system.get("half_samples_ms")
    }
    return {
        "bench": "realtime_rooms",
        "date": r["date"],
        "cpu_split": r["cpu_split"]
        + f"; connecting {r['rooms'] * r['members']:,} sockets took Chorus "
        f"{c['connect_s']:.0f} s"
        + (
            f", python-socketio {s['connect_s']:.0f} s (its servers and Redis free to use "
            "every CPU meanwhile, pinned again before measuring)"
            if s
            else ""
        )
        + f"; load average before/after {r['loadavg_before'][0]:.2f}/"
        f"{r['loadavg_after'][0]:.2f} on {r['cpus']} CPUs",
        "rows": rows,
        "distributions": [
            {
                "title": f"Publish->deliver latency at half of each system's saturation, {shape}",
                "unit": "ms",
                "series": series,
            }
        ]
        if series
        else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--members", type=int, default=10, help="connections per room")
    parser.add_argument("--burst", type=int, default=8_000, help="messages per Chorus burst")
    parser.add_argument(
        "--peer-burst", type=int, default=1_000, help="messages per python-socketio burst"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of a paced run")
    parser.add_argument("--concurrency", type=int, default=64, help="publishes in flight")
    parser.add_argument("--churners", type=int, default=200)
    parser.add_argument("--churn-seconds", type=float, default=3.0)
    parser.add_argument("--sample-every", type=int, default=10)
    parser.add_argument(
        "--systems", nargs="+", choices=["chorus", "socketio"], default=["chorus", "socketio"]
    )
    parser.add_argument("--server-cpus", help="e.g. 0 (default: the first CPU)")
    parser.add_argument("--load-cpus", help="e.g. 1 (default: the other CPUs)")
    parser.add_argument("--json-out", type=Path, help="write the bench contract JSON here")
    parser.add_argument("--out", type=Path, help="also write every raw measurement here")
    args = parser.parse_args()
    if args.concurrency >= args.rooms:
        parser.error("--concurrency must stay below --rooms (a room's messages stay in order)")
    bench_main(args, run, contract)


if __name__ == "__main__":
    main()
