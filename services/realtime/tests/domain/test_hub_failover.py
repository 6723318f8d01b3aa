"""The hub past one Redis: a Sentinel failover, a cluster node failover, a slot migration.

Each test publishes steadily while the fault happens, and holds the hub to what a
subscriber would notice: every event whose publish was acknowledged arrives, once, in
stream order — the pub/sub connection is rebuilt (or moved) and the gap replayed from the
stream. On a cluster, a channel on another node never notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError

from chorus_common.events import CLUSTER, EventBus, parse_stream_id, room_channel
from chorus_common.redis_client import RedisEndpoint, create_cluster, create_redis
from chorus_common.settings import RedisSettings, parse_cluster_seeds
from chorus_devstack.servers import RunningRedisCluster, RunningSentinelGroup
from chorus_realtime.domain.canary import Canary
from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.domain.hub import Batch, Hub
from chorus_realtime.transport.topology import ClusterTopology, SingleTopology


@dataclass(eq=False)
class Recorder:
    """A sink that records events (and when each arrived), and a publisher that records
    what was acknowledged."""

    frames: list[OutFrame] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    interruptions: int = 0

    def deliver(self, batch: Batch) -> bool:
        self.frames.extend(batch.frames)
        self.arrivals.extend([time.monotonic()] * len(batch.frames))
        return False

    def interrupted(self) -> None:
        self.interruptions += 1

    def texts(self) -> list[str]:
        return [orjson.loads(f.text)["data"]["message"] for f in self.frames]

    async def publish(self, bus: EventBus, channel: str, stop: asyncio.Event) -> None:
        """Publish ``m0``, ``m1``… every 10 ms until ``stop``; failed publishes are skipped
        (they were never acknowledged)."""
        n = 0
        while not stop.is_set():
            text = f"m{n}"
            n += 1
            with contextlib.suppress(RedisError, OSError):
                await bus.publish(channel, "message", {"message": text}, sender="t")
                self.acked.append(text)
            await asyncio.sleep(0.01)

    async def until_received(self, texts: list[str], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not set(texts) <= set(self.texts()):
                await asyncio.sleep(0.02)

    def longest_silence(self, since: float) -> float:
        """The longest wait between two deliveries from ``since`` on."""
        times = [since, *(t for t in self.arrivals if t >= since)]
        return max(b - a for a, b in itertools.pairwise(times))

    def assert_exactly_once_in_order(self) -> None:
        ids = [parse_stream_id(f.id) for f in self.frames if f.id is not None]
        assert ids == sorted(ids), "out of stream order"
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        texts = self.texts()
        twice = sorted({text for text in texts if texts.count(text) > 1})
        assert not twice, f"published twice: {twice}"
        lost = sorted(set(self.acked) - set(texts))
        assert not lost, f"acknowledged but never delivered: {lost}"
        assert self.interruptions == 0, "the gap was not replayed"


async def _live(hub: Hub, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not hub.connected:
            await asyncio.sleep(0.02)


async def _under_fault(
    name: str, recorders: dict[str, Recorder], bus: EventBus, fault: Awaitable[None]
) -> dict[str, float]:
    """Publish on every channel, run ``fault``, keep publishing until each channel has
    received 20 more events, then stop; check every channel got every acknowledged event
    once and in order. Prints, and returns, each channel's longest silence from the
    fault on."""
    stop = asyncio.Event()
    publishers = [
        asyncio.create_task(recorder.publish(bus, channel, stop))
        for channel, recorder in recorders.items()
    ]
    for recorder in recorders.values():
        async with asyncio.timeout(10):
            while len(recorder.frames) < 10:
                await asyncio.sleep(0.01)
    started = time.monotonic()
    await fault
    marks = {channel: len(r.frames) for channel, r in recorders.items()}
    for channel, recorder in recorders.items():
        async with asyncio.timeout(30):
            while len(recorder.frames) < marks[channel] + 20:
                await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*publishers)
    silences = {}
    for channel, recorder in recorders.items():
        await recorder.until_received(recorder.acked)
        recorder.assert_exactly_once_in_order()
        silences[channel] = recorder.longest_silence(started)
        print(
            f"\n{name}: {channel} acked={len(recorder.acked)} "
            f"delivered={len(recorder.frames)} lost=0 duplicates=0 "
            f"longest silence={silences[channel]:.2f}s"
        )
    return silences


# -- Sentinel ------------------------------------------------------------------------------


async def test_behind_sentinels_the_hub_follows_a_failover_and_replays_the_gap(
    redis_sentinel: RunningSentinelGroup,
) -> None:
    endpoint = RedisEndpoint.from_settings(
        RedisSettings(
            redis_sentinels=redis_sentinel.sentinels, redis_sentinel_master=redis_sentinel.master
        )
    )
    redis = create_redis(endpoint, client_name="hub-sentinel", retries=1)
    bus = EventBus(redis, history_size=10_000, history_ttl=600)
    hub = Hub(
        topology=SingleTopology(endpoint, client_name="hub-sentinel"),
        bus=bus,
        client_name="hub-sentinel",
    )
    await hub.start()
    channel = room_channel(f"sentinel-{os.urandom(4).hex()}")
    recorder = Recorder()
    killed = redis_sentinel.group.primary_name()
    try:
        await hub.subscribe(channel, recorder)

        async def kill_the_primary() -> None:
            old = redis_sentinel.group.primary()
            redis_sentinel.kill(killed)
            await asyncio.to_thread(redis_sentinel.group.wait_for_primary, other_than=old)

        await _under_fault("sentinel failover", {channel: recorder}, bus, kill_the_primary())
        assert hub.rebuilds >= 2
        await _live(hub)
    finally:
        await hub.stop()
        await redis.aclose()
        redis_sentinel.start_again(killed)


# -- Redis Cluster -------------------------------------------------------------------------


@pytest.fixture
async def cluster(redis_cluster: RunningRedisCluster) -> AsyncIterator[RedisCluster]:
    seeds = parse_cluster_seeds(redis_cluster.seeds)
    assert seeds is not None
    client = create_cluster(seeds, client_name="hub-cluster", retries=1)
    yield client
    await client.aclose()


@pytest.fixture
async def cluster_hub(
    redis_cluster: RunningRedisCluster, cluster: RedisCluster
) -> AsyncIterator[Hub]:
    seeds = parse_cluster_seeds(redis_cluster.seeds)
    assert seeds is not None
    bus = EventBus(cluster, history_size=10_000, history_ttl=600, layout=CLUSTER)
    hub = Hub(
        topology=ClusterTopology(seeds, client_name="hub-cluster"),
        bus=bus,
        client_name="hub-cluster",
    )
    await hub.start()
    yield hub
    await hub.stop()


def _channels_on_two_nodes(redis_cluster: RunningRedisCluster) -> tuple[str, str]:
    """Two room channels whose slots two different primaries serve."""
    first = room_channel(f"c-{os.urandom(4).hex()}")
    owner = redis_cluster.group.primary_of(CLUSTER.stream(first))
    while True:
        other = room_channel(f"c-{os.urandom(4).hex()}")
        if redis_cluster.group.primary_of(CLUSTER.stream(other)) != owner:
            return first, other


async def _recorded(hub: Hub, *channels: str) -> dict[str, Recorder]:
    """A recorder subscribed to each of ``channels``, by channel."""
    recorders = {channel: Recorder() for channel in channels}
    for channel, recorder in recorders.items():
        await hub.subscribe(channel, recorder)
    return recorders


async def test_a_cluster_node_failover_moves_its_channels_and_others_never_notice(
    redis_cluster: RunningRedisCluster, cluster_hub: Hub
) -> None:
    victim, bystander = _channels_on_two_nodes(redis_cluster)
    recorders = await _recorded(cluster_hub, victim, bystander)
    assert cluster_hub.node_of(victim) != cluster_hub.node_of(bystander)
    bystander_node = cluster_hub.node_of(bystander)
    assert bystander_node is not None
    bystander_link = cluster_hub._links[bystander_node]
    generation = bystander_link.generation
    killed = redis_cluster.group.primary_of(CLUSTER.stream(victim))
    gap: list[tuple[int, int]] = []

    async def kill_the_owner() -> None:
        before = len(recorders[bystander].frames)
        started = time.monotonic()
        redis_cluster.kill(killed)
        await asyncio.to_thread(
            redis_cluster.group.wait_for_primary, CLUSTER.stream(victim), other_than=killed
        )
        gap.append((before, len(recorders[bystander].frames)))
        print(f"\nreplica took over {killed}'s slots in {time.monotonic() - started:.2f}s")

    try:
        cluster = cluster_hub.bus.redis
        assert isinstance(cluster, RedisCluster)
        await _under_fault("cluster failover", recorders, cluster_hub.bus, kill_the_owner())
        # The victim's channel moved to the promoted replica; the bystander kept hearing
        # events the whole time, on the same connection.
        assert cluster_hub.node_of(victim) != f"127.0.0.1:{redis_cluster.group.nodes[killed].port}"
        [(before, during)] = gap
        assert during > before + 20, "the other node's channel stalled during the failover"
        assert bystander_link.generation == generation
        assert cluster_hub._links.get(bystander_node) is bystander_link
        await _live(cluster_hub)
    finally:
        redis_cluster.start_again(killed)
        await asyncio.to_thread(redis_cluster.group.wait_healthy)


async def test_a_slot_migration_under_load_moves_the_channel_and_loses_nothing(
    redis_cluster: RunningRedisCluster, cluster_hub: Hub
) -> None:
    channel = room_channel(f"migrating-{os.urandom(4).hex()}")
    recorder = Recorder()
    await cluster_hub.subscribe(channel, recorder)
    slot = key_slot(CLUSTER.stream(channel).encode())
    source = redis_cluster.group.primary_of(CLUSTER.stream(channel))
    target = next(name for name in redis_cluster.group.primaries() if name != source)

    async def migrate() -> None:
        moved = await asyncio.to_thread(redis_cluster.group.migrate_slot, slot, target, batch=1)
        assert moved >= 2  # the stream and its epoch

    await _under_fault("slot migration", {channel: recorder}, cluster_hub.bus, migrate())
    assert cluster_hub.node_of(channel) == f"127.0.0.1:{redis_cluster.group.nodes[target].port}"
    await _live(cluster_hub)


async def test_a_deaf_cluster_connection_is_rebuilt_alone(
    redis_cluster: RunningRedisCluster, cluster_hub: Hub
) -> None:
    deaf, other = _channels_on_two_nodes(redis_cluster)
    recorders = await _recorded(cluster_hub, deaf, other)
    canary = Canary(
        hub=cluster_hub, bus=cluster_hub.bus, instance="deaf-node", interval=0.2, timeout=0.5
    )
    await canary.start()
    try:
        async with asyncio.timeout(10):
            while not canary.healthy or len(canary._channels) < 2:
                await asyncio.sleep(0.05)
        deaf_node, other_node = cluster_hub.node_of(deaf), cluster_hub.node_of(other)
        assert deaf_node is not None
        assert other_node is not None
        other_generation = cluster_hub._links[other_node].generation
        deaf_generation = cluster_hub._links[deaf_node].generation

        async def deafen() -> None:
            conn = cluster_hub._links[deaf_node].conn
            assert conn is not None
            assert conn._transport is not None
            conn._transport.pause_reading()
            async with asyncio.timeout(10):
                while cluster_hub._links[deaf_node].generation == deaf_generation:
                    await asyncio.sleep(0.05)

        await _under_fault("deaf node", recorders, cluster_hub.bus, deafen())
        assert cluster_hub._links[other_node].generation == other_generation
    finally:
        await canary.stop()
