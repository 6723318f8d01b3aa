"""Fan-out on one Redis against fan-out on a 3-primary Redis Cluster: when to move to one.

Chorus against itself, in one run on one machine: two replicas whose channels live on one
Redis (``REDIS_URL``; the Redis feeds a replica of its own, as behind Sentinel, so that it
pays for replication as each cluster primary does), then two whose channels live on the
devstack's Redis Cluster (three primaries, three replicas, Redis 7:
``REALTIME_REDIS_CLUSTER``, hash-tagged keys, ``SPUBLISH`` in the publish script,
``SSUBSCRIBE`` per primary). Each pair carries two loads at once,
from one load generator each (``peers/wsload.py``), members spread over both replicas:

- **many rooms** (``--rooms`` x ``--members``, 1,000 rooms of 4 by default, 2 members on
  each replica): messages spread round-robin over the rooms — the load where Redis
  matters, since every message costs it a script (``XADD`` + publish) and one pub/sub
  write per subscribed replica, for only ``--members`` deliveries (rooms of 4 rather than
  10 keep the two topologies' 10,000 sockets from costing a minute to connect);
- **one room** of ``--subscribers`` (1,000): one slot, so one node, whatever the topology.

For each: bursts published as fast as they are taken (``peers/chorus_publisher.py``,
``--concurrency`` in flight: deliveries/s from the first delivery to the last, and the CPU
of **every Redis process** read before and after — the busiest one's CPU per delivery is
what decides when a Redis saturates), then paced runs at half the saturation rate
(publish->deliver p50/p99). The load generator checks every message's number in its room
(``verify``): what is missing or repeated is counted.

CPU split: the replicas and every Redis process on one CPU, the load generators, the
publishers and the harness on the other (``realtime_support.Split``). So the cluster gets
no more CPU than one Redis: what it changes is how the Redis work is spread (the busiest
process's share), which is what frees a saturated Redis once each node has a core of its
own. ``--json-out PATH`` writes the bench contract.
Run: ``.venv/bin/python bench/realtime_cluster.py [--json-out PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from realtime_support import (
    BIG_QUEUE,
    SECRET,
    SETTLE_S,
    Load,
    PipePublisher,
    Split,
    bench_main,
    cpu_seconds,
    median,
    paced,
    pooled,
    processes,
    raise_fd_limit,
    redis_pid,
    row,
    spread,
    start_publisher,
    start_replicas,
    wait_delivered,
)
from redis import Redis

from chorus_common.tokens import TokenService
from chorus_devstack.servers import RunningRedis, RunningRedisCluster

#: Latency samples kept per paced run, for the plots.
SAMPLES_PER_RUN = 1000


#: Each Redis process by name, and a connection to ask it for its CPU.
RedisProcesses = dict[str, Redis]


def cpu_each(redis: RedisProcesses) -> dict[str, float]:
    """Each Redis process's user + system CPU seconds so far, from ``INFO cpu`` (the
    server's own getrusage: microseconds, where /proc counts 10 ms ticks — too coarse for
    the few milliseconds Redis spends on a one-room burst)."""
    seconds = {}
    for name, client in redis.items():
        info: dict[str, Any] = client.info("cpu")  # type: ignore[assignment] # sync client
        seconds[name] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return seconds


async def saturate(
    load: Load,
    pub: PipePublisher,
    burst: int,
    members: int,
    servers: list[int],
    redis: RedisProcesses,
) -> dict[str, Any]:
    """One burst; deliveries/s, the replicas' and each Redis process's CPU per delivery,
    and the load side's CPU share (near 100 %: it, not the system, set the pace)."""
    await asyncio.sleep(SETTLE_S)
    load.ask("report")
    server0, redis0, t0 = cpu_seconds(servers), cpu_each(redis), time.monotonic()
    pub0, load0 = cpu_seconds([pub.proc.pid]), cpu_seconds([load.proc.pid])
    await pub.burst(burst)
    pub1 = cpu_seconds([pub.proc.pid])
    await wait_delivered(load, burst * members)
    server1, redis1, t1 = cpu_seconds(servers), cpu_each(redis), time.monotonic()
    load1 = cpu_seconds([load.proc.pid])
    report = load.ask("report")
    span = max(1e-6, report["last"] - report["first"])
    delivered = max(1, report["messages"])
    per_redis = {name: (redis1[name] - redis0[name]) for name in redis}
    busiest = max(per_redis, key=lambda name: per_redis[name])
    return {
        "delivered": report["messages"],
        "expected": burst * members,
        "deliveries_per_s": report["messages"] / span,
        "server_us_per_delivery": (server1 - server0) / delivered * 1e6,
        "busiest_redis": busiest,
        "busiest_redis_us_per_delivery": per_redis[busiest] / delivered * 1e6,
        "busiest_redis_cpu_share": per_redis[busiest] / max(1e-6, t1 - t0),
        "redis_us_per_delivery": sum(per_redis.values()) / delivered * 1e6,
        "redis_us_each": {name: cpu / delivered * 1e6 for name, cpu in per_redis.items()},
        "publisher_cpu_share": (pub1 - pub0) / max(1e-6, t1 - t0),
        "loadgen_cpu_share": (load1 - load0) / max(1e-6, t1 - t0),
    }


async def shape(
    name: str,
    args: argparse.Namespace,
    load: Load,
    pub: PipePublisher,
    *,
    burst: int,
    members: int,
    servers: list[int],
    redis: RedisProcesses,
) -> dict[str, Any]:
    """Saturation, then half of it: one shape's figures on one topology."""
    bursts = [await saturate(load, pub, burst, members, servers, redis) for _ in range(args.runs)]
    rate = spread([b["deliveries_per_s"] for b in bursts])
    half = (rate["median"] or 0) / members / 2
    halves = [
        await paced(load, pub, half, args.seconds, members, samples=SAMPLES_PER_RUN, verify=True)
        for _ in range(args.runs)
    ]
    result = {
        "shape": name,
        "deliveries_per_s": rate,
        "server_us_per_delivery": spread([b["server_us_per_delivery"] for b in bursts]),
        "busiest_redis_us_per_delivery": spread(
            [b["busiest_redis_us_per_delivery"] for b in bursts]
        ),
        "busiest_redis_cpu_share": spread([b["busiest_redis_cpu_share"] for b in bursts]),
        "busiest_redis": [b["busiest_redis"] for b in bursts],
        "redis_us_per_delivery": spread([b["redis_us_per_delivery"] for b in bursts]),
        "publisher_cpu_share": spread([b["publisher_cpu_share"] for b in bursts]),
        "loadgen_cpu_share": spread([b["loadgen_cpu_share"] for b in bursts]),
        "half_rate_msgs_per_s": half,
        "half_p50_ms": spread([h["p50_ms"] for h in halves]),
        "half_p99_ms": spread([h["p99_ms"] for h in halves]),
        "half_samples_ms": pooled([h["samples_ms"] for h in halves]),
        "lost": sum(max(0, b["expected"] - b["delivered"]) for b in bursts)
        + sum(h["missing"] + max(0, h["expected"] - h["delivered"]) for h in halves),
        "duplicates": sum(h["duplicates"] for h in halves),
        "bursts": bursts,
    }
    shown = {k: v for k, v in result.items() if k not in {"half_samples_ms", "bursts"}}
    print(json.dumps(shown), flush=True)
    return result


async def topology(
    name: str,
    args: argparse.Namespace,
    split: Split,
    main_redis: RunningRedis,
    replica: RunningRedis,
    cluster: RunningRedisCluster | None,
    work: Path,
) -> dict[str, Any]:
    """Two replicas on this topology, both loads connected, then each shape measured.

    The sockets connect with the replicas and Redis pinned as they are measured: unpinned
    on a loaded machine, the one-Redis replicas ran out of Redis pool connections while
    connecting and refused sockets ("Redis unavailable"), which the figures then miss.
    """
    tokens = TokenService(secret=SECRET, issuer="chorus")
    channels: dict[str, str] = {}
    if cluster is not None:
        channels = {"REALTIME_REDIS_CLUSTER": cluster.seeds, "PRIVATE_ROOMS": "false"}
    redis_ports = {"redis": main_redis.server.port, "its replica": replica.server.port}
    if cluster is not None:
        redis_ports |= {name: node.port for name, node in cluster.group.nodes.items()}
    redis = {name: Redis(port=port) for name, port in redis_ports.items()}
    with processes() as started, contextlib.ExitStack() as closing:
        for client in redis.values():
            closing.enter_context(client)
        replicas = await start_replicas(
            started,
            split,
            main_redis.url,
            [f"{name}-1", f"{name}-2"],
            work,
            **BIG_QUEUE,
            **channels,
        )
        ports, servers = [port for port, _ in replicas], [proc.pid for _, proc in replicas]

        def target(i: int, path: str) -> dict[str, Any]:
            token = tokens.issue(str(100_000 + i))
            return {
                "host": "127.0.0.1",
                "port": ports[i % 2],
                "path": path,
                "headers": [f"Sec-WebSocket-Protocol: chorus.v1, bearer.{token}"],
            }

        connecting = time.monotonic()
        many = Load(
            {
                "dialect": "chorus",
                "targets": [
                    target(i, f"/ws/room-{i // args.members}")
                    for i in range(args.rooms * args.members)
                ],
                "sample_every": args.sample_every,
            },
            started,
            split,
        )
        one = Load(
            {
                "dialect": "chorus",
                "targets": [
                    target(args.rooms * args.members + i, "/ws/fan-0")
                    for i in range(args.subscribers)
                ],
                "sample_every": args.sample_every,
            },
            started,
            split,
        )
        await asyncio.gather(asyncio.to_thread(many.ready), asyncio.to_thread(one.ready))
        connect_s = time.monotonic() - connecting
        env = {"REDIS_URL": main_redis.url, **channels}
        rooms_pub = start_publisher(
            started,
            split,
            sys.executable,
            "chorus_publisher.py",
            env,
            "--rooms",
            str(args.rooms),
            "--concurrency",
            str(args.concurrency),
        )
        room_pub = start_publisher(
            started,
            split,
            sys.executable,
            "chorus_publisher.py",
            env,
            "--rooms",
            "1",
            "--prefix",
            "fan-",
        )
        return {
            "connect_s": connect_s,
            "many": await shape(
                f"{name}: {args.rooms} rooms x {args.members}",
                args,
                many,
                rooms_pub,
                burst=args.burst,
                members=args.members,
                servers=servers,
                redis=redis,
            ),
            "one": await shape(
                f"{name}: 1 room x {args.subscribers}",
                args,
                one,
                room_pub,
                burst=args.room_burst,
                members=args.subscribers,
                servers=servers,
                redis=redis,
            ),
        }


async def run(args: argparse.Namespace, split: Split) -> dict[str, Any]:
    raise_fd_limit()
    split.pin_load(os.getpid())
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rooms": args.rooms,
        "members": args.members,
        "subscribers": args.subscribers,
        "runs": args.runs,
        "seconds": args.seconds,
        "cpu_split": split.describe(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
    }
    print(f"CPU split: {split.describe()}", flush=True)
    main_redis = RunningRedis(work / "redis")
    replica = RunningRedis(work / "replica")
    cluster = RunningRedisCluster(work / "cluster")
    main_redis.start()
    try:
        # Six cluster nodes take a while to agree on their slots: started beside the rest.
        await asyncio.gather(asyncio.to_thread(replica.start), asyncio.to_thread(cluster.start))
        try:
            with Redis(port=replica.server.port) as client:
                client.replicaof("127.0.0.1", main_redis.server.port)
            redis_pids = [redis_pid(main_redis), redis_pid(replica)]
            for process in cluster.processes.values():
                assert process.pid is not None
                redis_pids.append(process.pid)
            for pid in redis_pids:
                split.pin_server(pid)
            results["one_redis"] = await topology(
                "one", args, split, main_redis, replica, None, work
            )
            results["cluster"] = await topology(
                "cluster", args, split, main_redis, replica, cluster, work
            )
        finally:
            cluster.stop()
            replica.stop()
    finally:
        main_redis.stop()
    results["loadavg_after"] = os.getloadavg()
    return results


# -- the result (bench JSON contract) -------------------------------------------------------------

PEER = "Chorus on one Redis (with its replica)"


def contract(r: dict[str, Any]) -> dict[str, Any]:
    """The rows (figure, peer, Chorus on the cluster, ratio, target, met) and the samples."""
    one, cl = r["one_redis"], r["cluster"]
    runs = f"median (min-max) of {r['runs']} run(s)"
    many_shape = f"{r['rooms']:,} rooms of {r['members']} over 2 replicas"
    room_shape = f"1 room x {r['subscribers']:,} over 2 replicas"

    def ratio(key: str, shape: str) -> float:
        return (median(cl[shape][key]) or 0) / (median(one[shape][key]) or 1)

    def pct(s: dict[str, Any], key: str) -> str:
        return f"{100 * (median(s[key]) or 0):.0f} %"

    def share(s: dict[str, Any]) -> str:
        return pct(s, "busiest_redis_cpu_share")

    def exact(shape: str) -> str:
        return (
            f"lost {one[shape]['lost']} / {cl[shape]['lost']}, duplicated "
            f"{one[shape]['duplicates']} / {cl[shape]['duplicates']} (one Redis / cluster)"
        )

    rows = []
    for shape, label, burst_note in (
        ("many", many_shape, "bursts spread round-robin over the rooms"),
        ("one", room_shape, "bursts into the room"),
    ):
        o, c = one[shape], cl[shape]
        # Many rooms spread over three primaries; one room is one slot on one node, which
        # the cluster cannot spread, but must not make dearer.
        cpu_target, cpu_limit = ("<= 0.5x", 0.5) if shape == "many" else ("<= 1.25x", 1.25)
        rows.append(
            row(
                f"Busiest Redis process's CPU per delivery at saturation, {label}",
                PEER,
                o["busiest_redis_us_per_delivery"],
                c["busiest_redis_us_per_delivery"],
                "us",
                cpu_target,
                ratio("busiest_redis_us_per_delivery", shape) <= cpu_limit,
                note=f"user + system CPU of each redis-server / deliveries; busiest: "
                f"{', '.join(sorted(set(c['busiest_redis'])))} on the cluster, at "
                f"{share(c)} of a core (one Redis at {share(o)}); every Redis process "
                f"together: {median(o['redis_us_per_delivery']) or 0:.2f} / "
                f"{median(c['redis_us_per_delivery']) or 0:.2f} us; replicas: "
                f"{median(o['server_us_per_delivery']) or 0:.2f} / "
                f"{median(c['server_us_per_delivery']) or 0:.2f} us (one Redis / cluster); "
                f"{runs}",
            )
        )
        rows.append(
            row(
                f"Deliveries/s at saturation, {label}",
                PEER,
                o["deliveries_per_s"],
                c["deliveries_per_s"],
                "deliveries/s",
                ">= 0.9x",
                ratio("deliveries_per_s", shape) >= 0.9,
                note=f"{burst_note}; first to last delivery; replicas and every Redis "
                f"process share one CPU; the publisher at {pct(o, 'publisher_cpu_share')} / "
                f"{pct(c, 'publisher_cpu_share')} of a core, the load generator at "
                f"{pct(o, 'loadgen_cpu_share')} / {pct(c, 'loadgen_cpu_share')}; "
                f"{exact(shape)}; {runs}",
            )
        )
        rows.append(
            row(
                f"Publish->deliver p99 at half of each topology's saturation rate, {label}",
                PEER,
                o["half_p99_ms"],
                c["half_p99_ms"],
                "ms",
                "<= 1.5x",
                ratio("half_p99_ms", shape) <= 1.5,
                note=f"one Redis at {o['half_rate_msgs_per_s']:,.0f} msgs/s, the cluster at "
                f"{c['half_rate_msgs_per_s']:,.0f} msgs/s; p50 "
                f"{median(o['half_p50_ms']) or 0:.1f} / {median(c['half_p50_ms']) or 0:.1f} ms; "
                f"{runs}",
            )
        )
    return {
        "bench": "realtime_cluster",
        "date": r["date"],
        "cpu_split": r["cpu_split"]
        + f"; the cluster: 3 primaries + 3 replicas (Redis 7, sharded pub/sub); connecting "
        f"took {one['connect_s']:.0f} s / {cl['connect_s']:.0f} s; load average before/after "
        f"{r['loadavg_before'][0]:.2f}/{r['loadavg_after'][0]:.2f} on {r['cpus']} CPUs",
        "rows": rows,
        "distributions": [
            {
                "title": f"Publish->deliver latency at half of saturation, {label}",
                "unit": "ms",
                "series": {
                    "one Redis": one[shape]["half_samples_ms"],
                    "Redis Cluster": cl[shape]["half_samples_ms"],
                },
            }
            for shape, label in (("many", many_shape), ("one", room_shape))
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--members", type=int, default=4, help="connections per room")
    parser.add_argument("--subscribers", type=int, default=1000, help="the one room's size")
    parser.add_argument("--burst", type=int, default=6_000, help="messages per many-rooms burst")
    parser.add_argument("--room-burst", type=int, default=150, help="messages per one-room burst")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of a paced run")
    parser.add_argument("--concurrency", type=int, default=64, help="publishes in flight")
    parser.add_argument("--sample-every", type=int, default=10)
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
