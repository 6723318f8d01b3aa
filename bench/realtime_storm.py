"""Reconnect storm and idle capacity: a replica dies under 10,000 clients, once idle sockets.

1. **Reconnect storm.** Two Chorus replicas (A, B) behind one Redis. ``--clients`` room
   clients (``peers/wsstorm.py``: ``chorus_client``'s reconnect behaviour and its own
   ``Backoff``, in a lean load generator — see there) are connected to A, in rooms of
   ``--members``; ``--others`` clients (``peers/wsload.py``) are on B, in rooms of their
   own. Both sets of rooms get messages at a steady rate (``peers/chorus_publisher.py``,
   numbered per room). Then A is SIGKILLed: every client loses its socket at once, waits
   its backoff and reconnects to B with ``?since=<last id>``. Measured: the time from the
   kill until every client resumed (its ``subscribed`` frame on B), handshakes per second
   per core (resumes / CPU seconds of B and Redis over that time), the others' p99
   meanwhile (against theirs just before), and what the storm clients lost — every
   room message is numbered, so a gap or a repeat across the reconnect is counted.
2. **Idle capacity.** One fresh replica, ``--idle`` clients connecting (``--concurrency`` at
   a time, from several 127.0.0.x source addresses: one address has ~28,000 ephemeral
   ports), then sitting idle: accept rate (connections / seconds to connect them all) and
   memory per connection (the replica's RSS growth / connections). By default these are
   the storm's own ``--clients`` connecting to replica A, which is fresh, before any
   traffic: connecting a second set of idle sockets would double this bench's time for
   the same two figures. ``--idle N`` connects N more on a replica of their own (up to
   what one process may hold: the file descriptor limit here allows about 19,800).

The file descriptor limit is raised for every process (as root, up to ``--max-fds``). CPU
split: servers + Redis on one CPU, load generators, publishers and the harness on the
other. ``--json-out PATH`` writes the bench contract.
Run: ``.venv/bin/python bench/realtime_storm.py [--json-out PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from realtime_support import (
    PEERS,
    SECRET,
    SETTLE_S,
    Generator,
    Load,
    PipePublisher,
    Procs,
    Profiler,
    Split,
    bench_main,
    cpu_seconds,
    processes,
    raise_fd_limit,
    redis_pid,
    row,
    rss,
    settled_rss,
    start_chorus,
    start_replicas,
)

from chorus_common.tokens import TokenService
from chorus_devstack.servers import RunningRedis

#: Replica settings for many clients: their connections per user, and fast presence expiry.
REPLICA_ENV = {"MAX_CONNECTIONS_PER_USER": "100000", "LOG_LEVEL": "ERROR"}


class Storm(Generator):
    """A ``peers/wsstorm.py`` process."""

    def __init__(self, job: dict[str, Any], started: Procs, split: Split) -> None:
        super().__init__("wsstorm.py", job, started, split)


def publisher(started: Procs, split: Split, redis_url: str, *args: str) -> PipePublisher:
    proc = subprocess.Popen(
        [sys.executable, str(PEERS / "chorus_publisher.py"), *args],
        env={**os.environ, "REDIS_URL": redis_url},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    started.append(proc)
    split.pin_load(proc.pid)
    return PipePublisher(proc)


def header(tokens: TokenService, user: int) -> list[str]:
    return [f"Sec-WebSocket-Protocol: chorus.v1, bearer.{tokens.issue(str(user))}"]


def quantile(samples: list[float], q: float) -> float | None:
    return samples[min(len(samples) - 1, int(q * len(samples)))] if samples else None


async def storm(args: argparse.Namespace, split: Split, work: Path) -> dict[str, Any]:
    tokens = TokenService(secret=SECRET, issuer="chorus")
    redis = RunningRedis(work / "redis")
    redis.start()
    split.pin_server(redis_pid(redis))
    try:
        # The Redis goes with the replicas: no graceful drain of 11,000 sockets at the end.
        with processes(kill=True) as started:
            (port_a, replica_a), (port_b, replica_b) = await start_replicas(
                started, split, redis.url, ["storm-a", "storm-b"], work, **REPLICA_ENV
            )
            rss0 = rss(replica_a)
            rooms = args.clients // args.members
            connecting = time.monotonic()
            clients = Storm(
                {
                    "concurrency": args.concurrency,
                    "targets": [
                        {
                            "urls": [["127.0.0.1", port_a], ["127.0.0.1", port_b]],
                            "room": f"storm-{i // args.members}",
                            "headers": header(tokens, 200_000 + i),
                        }
                        for i in range(rooms * args.members)
                    ],
                },
                started,
                split,
            )
            connected = int((await asyncio.to_thread(clients.ask, ""))["ready"])
            connect_s = time.monotonic() - connecting
            # Before any traffic, A's clients are idle sockets on a fresh replica: its accept
            # rate and memory per connection are the idle-capacity figures of the default run.
            rss1 = await settled_rss(replica_a)
            others = Load(
                {
                    "dialect": "chorus",
                    "sample_every": 1,
                    "targets": [
                        {
                            "host": "127.0.0.1",
                            "port": port_b,
                            "path": f"/ws/other-{i // args.members}",
                            "headers": header(tokens, 500_000 + i),
                        }
                        for i in range(args.others)
                    ],
                },
                started,
                split,
            )
            await asyncio.to_thread(others.ready)
            storm_pub = publisher(
                started, split, redis.url, "--rooms", str(rooms), "--prefix", "storm-"
            )
            other_pub = publisher(
                started,
                split,
                redis.url,
                "--rooms",
                str(args.others // args.members),
                "--prefix",
                "other-",
            )
            seconds = args.before + args.patience
            traffic = asyncio.gather(
                storm_pub.rate(args.storm_rate, seconds), other_pub.rate(args.other_rate, seconds)
            )
            await asyncio.sleep(SETTLE_S)
            # The publishers are processes of their own: measure "before" once their
            # messages flow (a loaded machine takes seconds to start them).
            deadline = time.monotonic() + 60
            while not others.ask("report")["messages"] and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
            await asyncio.sleep(args.before)
            before = others.ask("report 1000")
            clients.ask("mark")
            profiler = Profiler(args.py_spy, args.profile_dir)
            profiler.start("storm-b", [replica_b.pid])
            cpu0, t0 = cpu_seconds([replica_b.pid, redis_pid(redis)]), time.monotonic()
            replica_a.send_signal(signal.SIGKILL)
            replica_a.wait()
            report: dict[str, Any] = {}
            while time.monotonic() - t0 < args.patience:
                await asyncio.sleep(0.25)
                report = await asyncio.to_thread(clients.ask, "report")
                if report["resumed"] >= report["clients"]:
                    break
            all_back = report["resume_s"][-1] if report.get("resume_s") else None
            cpu1 = cpu_seconds([replica_b.pid, redis_pid(redis)])
            profiler.stop()
            during = others.ask("report 1000")
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic
            # The rooms' traffic goes on a little, then every message must have arrived.
            await asyncio.sleep(1.0)
            final = await asyncio.to_thread(clients.ask, "report")
    finally:
        redis.stop()
    cpu = max(1e-6, cpu1 - cpu0)
    return {
        "idle": {
            "asked": args.clients,
            "connections": connected,
            "connect_s": connect_s,
            "accepts_per_s": connected / connect_s,
            "bytes_per_conn": (rss1 - rss0) / max(1, connected),
            "storm": True,
        },
        "clients": report.get("clients", 0),
        "connect_s": connect_s,
        "resumed": report.get("resumed", 0),
        "all_resumed_s": all_back,
        "resume_p50_s": quantile(report.get("resume_s", []), 0.5),
        "handshakes_per_cpu_s": report.get("resumed", 0) / cpu,
        "server_cpu_s": cpu,
        "others_before_p99_ms": before["p99_ms"],
        "others_during_p99_ms": during["p99_ms"],
        "others_before_samples_ms": before["samples_ms"],
        "others_during_samples_ms": during["samples_ms"],
        "missing": final["missing"],
        "duplicates": final["duplicates"],
        "messages": final["messages"],
        "not_recovered": final["not_recovered"],
        "closes": final["closes"],
    }


#: Idle sockets on a replica of their own (``--idle`` or ``--only idle``) when not told.
DEFAULT_IDLE = 10_000
#: File descriptors a process keeps for itself besides its sockets (logs, pipes, Redis).
SPARE_FDS = 200


async def idle(args: argparse.Namespace, split: Split, work: Path) -> dict[str, Any]:
    """``--idle`` sockets on one fresh replica: as many as one process may hold, if fewer."""
    tokens = TokenService(secret=SECRET, issuer="chorus")
    anywhere = Split(split.server | split.load, split.server | split.load)
    per_process = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - SPARE_FDS
    wanted = min(args.idle or DEFAULT_IDLE, per_process)
    sources = [f"127.0.0.{2 + i}" for i in range(args.sources)]
    redis = RunningRedis(work / "redis-idle")
    redis.start()
    try:
        with processes() as started:
            port, replica = start_chorus(
                started, anywhere, redis.url, "idle", work / "idle.log", **REPLICA_ENV
            )
            rss0 = rss(replica)
            targets = [
                {
                    "urls": [["127.0.0.1", port]],
                    "room": f"idle-{i // 100}",
                    "headers": header(tokens, 1_000_000 + i),
                    "source": sources[i % len(sources)],
                }
                for i in range(wanted)
            ]
            connecting = time.monotonic()
            groups = [
                Storm(
                    {"concurrency": args.concurrency, "targets": targets[at : at + per_process]},
                    started,
                    anywhere,
                )
                for at in range(0, len(targets), per_process)
            ]
            answers = await asyncio.gather(*(asyncio.to_thread(g.ask, "") for g in groups))
            ready = sum(int(answer["ready"]) for answer in answers)
            connect_s = time.monotonic() - connecting
            rss1 = await settled_rss(replica)
    finally:
        redis.stop()
    return {
        "asked": args.idle or DEFAULT_IDLE,
        "connections": ready,
        "fd_limit": per_process + SPARE_FDS,
        "connect_s": connect_s,
        "accepts_per_s": ready / connect_s,
        "bytes_per_conn": (rss1 - rss0) / max(1, ready),
    }


async def run(args: argparse.Namespace, split: Split) -> dict[str, Any]:
    raise_fd_limit(args.max_fds)
    split.pin_load(os.getpid())
    work = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_split": split.describe(),
        "cpus": os.cpu_count(),
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "loadavg_before": os.getloadavg(),
        "members": args.members,
        "others": args.others,
        "storm_rate": args.storm_rate,
        "other_rate": args.other_rate,
    }
    print(f"CPU split: {split.describe()}", flush=True)
    if "storm" in args.only:
        results["storm"] = await storm(args, split, work)
        results["idle"] = results["storm"].pop("idle")
        print(json.dumps({k: v for k, v in results["storm"].items() if "samples" not in k}))
    if args.idle or "storm" not in args.only:  # idle sockets on a replica of their own
        results["idle"] = await idle(args, split, work)
    if "idle" in results:
        print(json.dumps(results["idle"]), flush=True)
    results["loadavg_after"] = os.getloadavg()
    return results


# -- the result (bench JSON contract) -------------------------------------------------------------


def one(value: float | None) -> dict[str, Any] | None:
    """A single measurement as the spread ``row`` takes."""
    return None if value is None else {"median": value, "min": value, "max": value}


def contract(r: dict[str, Any]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    distributions: list[dict[str, Any]] = []
    s, i = r.get("storm"), r.get("idle")
    none = "— (an absolute target)"
    if s:
        n = s["clients"]
        back = s["all_resumed_s"]
        exact = s["missing"] == 0 and s["duplicates"] == 0 and s["not_recovered"] == 0
        storm = f"{n:,} clients of a SIGKILLed replica reconnecting to the other"
        rows += [
            row(
                f"Reconnect storm: seconds until all {n:,} clients resumed",
                none,
                None,
                one(back),
                "s",
                "<= 30 s, all resumed",
                back is not None and back <= 30 and s["resumed"] >= n,
                note=f"{storm}, with chorus_client's own Backoff (full jitter, 0.05 s "
                "doubling to 2 s) in a lean load generator; "
                f"{s['resumed']:,} of {n:,} resumed; half within "
                f"{(s['resume_p50_s'] or 0):.1f} s; connecting them in the first place took "
                f"{s['connect_s']:.0f} s",
            ),
            row(
                "Reconnect storm: handshakes per server CPU-second",
                none,
                None,
                one(s["handshakes_per_cpu_s"]),
                "handshakes/CPU-s",
                ">= 500",
                s["handshakes_per_cpu_s"] >= 500,
                note="resumed clients / CPU seconds of the surviving replica and Redis from "
                "the kill until the last resumed (token check, presence, subscribe, replay "
                f"from since): {s['server_cpu_s']:.1f} CPU-s",
            ),
            row(
                "Reconnect storm: p99 of the other replica's clients meanwhile",
                "the same clients just before the kill",
                one(s["others_before_p99_ms"]),
                one(s["others_during_p99_ms"]),
                "ms",
                "<= 250 ms",
                (s["others_during_p99_ms"] or 1e9) <= 250,
                note=f"{r['others']:,} clients on the surviving replica in rooms of "
                f"{r['members']}, {r['other_rate']:g} msgs/s; publish->deliver, every "
                "client timed",
            ),
            row(
                "Reconnect storm: room messages lost or repeated across the reconnect",
                none,
                None,
                one(float(s["missing"] + s["duplicates"])),
                "messages",
                "0",
                exact,
                note=f"{s['messages']:,} numbered messages received by the storm clients "
                f"({r['storm_rate']:g} msgs/s over their rooms, before, during and after "
                f"the storm): {s['missing']} missing, {s['duplicates']} repeated; "
                f"{s['not_recovered']} resumes not recovered; closes seen: "
                + ", ".join(f"{code} x{count:,}" for code, count in sorted(s["closes"].items())),
            ),
        ]
        distributions.append(
            {
                "title": "Other clients' publish->deliver latency, before and during the storm",
                "unit": "ms",
                "series": {
                    "before the kill": s["others_before_samples_ms"],
                    "during the storm": s["others_during_samples_ms"],
                },
            }
        )
    if i:
        kib = i["bytes_per_conn"] / 1024
        rows += [
            row(
                f"Idle WebSockets on one replica: accept rate up to {i['connections']:,}",
                none,
                None,
                one(i["accepts_per_s"]),
                "connections/s",
                ">= 500/s",
                i["accepts_per_s"] >= 500,
                note=(
                    f"the storm's {i['connections']:,} clients connecting to its fresh replica "
                    f"(rooms of 10, servers pinned as above) in {i['connect_s']:.0f} s, before "
                    "any traffic; `--idle N` measures N sockets on a replica of their own "
                    "instead (up to what one process may hold here, about 19,800)"
                    if i.get("storm")
                    else f"{i['connections']:,} authenticated room sockets (rooms of 100) in "
                    f"{i['connect_s']:.0f} s; one replica of their own, unpinned"
                )
                + (
                    f"; {i['asked']:,} asked, but one process may hold "
                    f"{i['fd_limit']:,} file descriptors here and the hard limit cannot be "
                    "raised (no CAP_SYS_RESOURCE): measured at what one replica can hold"
                    if i["connections"] < i["asked"]
                    else ""
                ),
            ),
            row(
                f"Memory per idle WebSocket at {i['connections']:,} connections, one replica",
                none,
                None,
                one(i["bytes_per_conn"]),
                "KiB",
                "<= 20 KiB",
                kib <= 20,
                scale=1024,
                note="RSS growth of a fresh replica / connections"
                + (
                    ", once the storm's clients are in and before any message"
                    if i.get("storm")
                    else ""
                ),
            ),
        ]
    return {
        "bench": "realtime_storm",
        "date": r["date"],
        "cpu_split": r["cpu_split"] + f"; load average before/after {r['loadavg_before'][0]:.2f}/"
        f"{r['loadavg_after'][0]:.2f} on {r['cpus']} CPUs",
        "rows": rows,
        "distributions": distributions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=10_000, help="clients of the dying replica")
    parser.add_argument("--members", type=int, default=10, help="clients per room")
    parser.add_argument("--others", type=int, default=1_000, help="clients of the other replica")
    parser.add_argument("--storm-rate", type=float, default=200.0, help="msgs/s, storm rooms")
    parser.add_argument("--other-rate", type=float, default=100.0, help="msgs/s, others' rooms")
    parser.add_argument("--before", type=float, default=3.0, help="seconds measured before")
    parser.add_argument("--patience", type=float, default=90.0, help="longest storm wait")
    parser.add_argument(
        "--idle",
        type=int,
        default=0,
        help="idle connections on a replica of their own, up to what one process may hold "
        "(default: none; the storm's clients, before the kill, give the idle figures)",
    )
    parser.add_argument("--sources", type=int, default=4, help="127.0.0.x source addresses")
    parser.add_argument("--concurrency", type=int, default=200, help="connects in flight")
    parser.add_argument("--max-fds", type=int, default=200_000)
    parser.add_argument("--only", nargs="+", choices=["storm", "idle"], default=["storm", "idle"])
    parser.add_argument("--py-spy", help="py-spy binary: profile the surviving replica")
    parser.add_argument(
        "--profile-dir", type=Path, default=Path(__file__).parent / "results" / "raw" / "storm"
    )
    parser.add_argument("--server-cpus", help="e.g. 0 (default: the first CPU)")
    parser.add_argument("--load-cpus", help="e.g. 1 (default: the other CPUs)")
    parser.add_argument("--json-out", type=Path, help="write the bench contract JSON here")
    parser.add_argument("--out", type=Path, help="also write every raw measurement here")
    args = parser.parse_args()
    bench_main(args, run, contract)


if __name__ == "__main__":
    main()
