"""The hub on a real Redis: subscription races, and repairing a deaf connection."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from chorus_common.events import EventBus, History, pubsub_channel, room_channel
from chorus_common.redis_client import RedisEndpoint, create_redis
from chorus_realtime.domain.canary import Canary
from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.domain.hub import Batch, Hub
from chorus_realtime.transport.pubsub import RedisAddress
from chorus_realtime.transport.topology import SINGLE, SingleTopology


class Collector:
    """A sink that records frames."""

    def __init__(self, *, stall: float = 0.0) -> None:
        self.frames: list[OutFrame] = []
        self.changed = asyncio.Event()
        self.interruptions = 0
        #: Seconds each frame holds up the event loop (a replica far behind its Redis).
        self.stall = stall

    def deliver(self, batch: Batch) -> bool:
        self.frames.extend(batch.frames)
        if self.stall:
            time.sleep(self.stall * len(batch.frames))
        self.changed.set()
        return False

    def interrupted(self) -> None:
        self.interruptions += 1
        self.changed.set()

    def texts(self) -> list[str]:
        return [orjson.loads(f.text)["data"]["message"] for f in self.frames]

    async def until(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.frames) < count:
                self.changed.clear()
                await self.changed.wait()


def _channel() -> str:
    return room_channel(f"hub-{os.urandom(4).hex()}")


async def test_subscribe_returns_once_live_and_unsubscribe_stops_delivery(
    hub: Hub, bus: EventBus
) -> None:
    channel = _channel()
    sink = Collector()
    await hub.subscribe(channel, sink)
    await bus.publish(channel, "message", {"message": "one"}, sender="t")
    await sink.until(1)
    assert hub.channel_count == 1
    hub.unsubscribe(channel, sink)
    assert hub.channel_count == 0
    await bus.publish(channel, "message", {"message": "two"}, sender="t")
    # Another channel's event proves the connection went on reading past "two".
    probe, other = Collector(), _channel()
    await hub.subscribe(other, probe)
    await bus.publish(other, "message", {"message": "probe"}, sender="t")
    await probe.until(1)
    assert sink.texts() == ["one"]


async def test_subscribe_racing_unsubscribe_misses_nothing(hub: Hub, bus: EventBus) -> None:
    channel = _channel()
    for _ in range(50):
        first = Collector()
        task = asyncio.create_task(hub.subscribe(channel, first))
        await asyncio.sleep(0)
        hub.unsubscribe(channel, first)
        second = Collector()
        await asyncio.gather(task, hub.subscribe(channel, second))
        # Confirmed means live: an event published right now must arrive.
        await bus.publish(channel, "message", {"message": "now"}, sender="t")
        await second.until(1)
        assert second.texts() == ["now"]
        assert first.texts() == []  # unsubscribed before it was confirmed: nothing reaches it
        hub.unsubscribe(channel, second)


async def test_a_deaf_connection_is_noticed_rebuilt_and_the_gap_replayed(
    hub: Hub, bus: EventBus
) -> None:
    channel = _channel()
    sink = Collector()
    canary = Canary(hub=hub, bus=bus, instance="deaf-test", interval=0.2, timeout=0.5)
    await canary.start()
    try:
        await hub.subscribe(channel, sink)
        first = await bus.publish(channel, "message", {"message": "m0"}, sender="t")
        await sink.until(1)
        hub.note_position(channel, first.id)
        async with asyncio.timeout(5):
            while not canary.healthy:
                await asyncio.sleep(0.05)
        # Make the connection deaf behind the hub's back, as a half-open socket is: it
        # stays open and error-free, and nothing arrives on it any more.
        conn = hub._links[SINGLE].conn
        assert conn is not None
        assert conn._transport is not None
        conn._transport.pause_reading()
        for n in range(1, 6):
            await bus.publish(channel, "message", {"message": f"m{n}"}, sender="t")
        # The canary fails, the hub rebuilds, and what it did not hear is replayed.
        await sink.until(6, timeout=10)
        assert sink.texts() == [f"m{n}" for n in range(6)]
        assert hub.rebuilds >= 2
        await bus.publish(channel, "message", {"message": "live"}, sender="t")
        await sink.until(7)
        assert sink.texts()[-1] == "live"
    finally:
        await canary.stop()


class Gate:
    """Holds callers at :meth:`passing` while closed, and says when one arrived."""

    def __init__(self) -> None:
        self.closed = False
        self.arrived = asyncio.Event()
        self._open = asyncio.Event()

    def close(self) -> None:
        self.closed, self.arrived = True, asyncio.Event()
        self._open.clear()

    def open(self) -> None:
        self.closed = False
        self._open.set()

    async def passing(self) -> None:
        if self.closed:
            self.arrived.set()
            await self._open.wait()


class GatedBus(EventBus):
    """The real bus, whose history reads (the hub's gap replays) can be held at a gate."""

    gate: Gate

    async def history(
        self, channel: str, since: str, *, limit: int = 1000, max_bytes: int | None = None
    ) -> History:
        await self.gate.passing()
        return await super().history(channel, since, limit=limit, max_bytes=max_bytes)


class GatedTopology(SingleTopology):
    """One Redis, whose reconnects can be held at a gate before they dial."""

    gate: Gate

    async def address(self, node: str) -> RedisAddress:
        await self.gate.passing()
        return await super().address(node)


@pytest.fixture
async def gated(redis_url: str) -> AsyncIterator[tuple[Hub, GatedBus, GatedTopology]]:
    """A started hub that replays at most 3 events, its bus and topology gated."""
    redis = create_redis(redis_url, client_name="hub-test")
    bus = GatedBus(redis, history_size=1000, history_ttl=86_400)
    bus.gate = Gate()
    topology = GatedTopology(RedisEndpoint(url=redis_url), client_name="hub-test")
    topology.gate = Gate()
    hub = Hub(topology=topology, bus=bus, client_name="hub-test", replay_limit=3)
    await hub.start()
    yield hub, bus, topology
    await hub.stop()
    await redis.aclose()


async def _deafen(hub: Hub) -> None:
    """Stop the hub's connection reading, behind its back (a half-open socket)."""
    async with asyncio.timeout(10):
        while not hub.connected:
            await asyncio.sleep(0.01)
    conn = hub._links[SINGLE].conn
    assert conn is not None
    assert conn._transport is not None
    conn._transport.pause_reading()


async def _subscribed_at_m0(hub: Hub, bus: EventBus) -> tuple[str, Collector]:
    """A channel with one subscriber that has received (and noted) its first event, m0."""
    channel, sink = _channel(), Collector()
    await hub.subscribe(channel, sink)
    first = await bus.publish(channel, "message", {"message": "m0"}, sender="t")
    await sink.until(1)
    hub.note_position(channel, first.id)
    return channel, sink


async def _publish(bus: EventBus, channel: str, *numbers: int) -> None:
    for n in numbers:
        await bus.publish(channel, "message", {"message": f"m{n}"}, sender="t")


async def _rebuild(hub: Hub, reason: str) -> None:
    """Rebuild the hub's connection and wait until the new one has every channel back."""
    generation = hub.generation
    hub.rebuild(reason)
    async with asyncio.timeout(10):
        while hub.generation == generation or not hub.connected:
            await asyncio.sleep(0.01)


async def _until(sink: Collector, done: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not done():
            sink.changed.clear()
            await sink.changed.wait()


async def _live_after_every_replay(hub: Hub, bus: EventBus, channel: str, sink: Collector) -> None:
    """Publish "live" and see it arrive (or one more interruption), then wait until no gap
    replay of the hub is left running: nothing is on its way to ``sink`` any more."""
    interruptions = sink.interruptions
    await bus.publish(channel, "message", {"message": "live"}, sender="t")
    await _until(sink, lambda: "live" in sink.texts() or sink.interruptions > interruptions)
    async with asyncio.timeout(10):
        while hub._tasks:
            await asyncio.sleep(0.01)


async def _deaf_through(hub: Hub, bus: EventBus, *numbers: int) -> tuple[str, Collector]:
    """A channel whose subscriber got m0, then missed ``numbers`` on a deaf connection."""
    channel, sink = await _subscribed_at_m0(hub, bus)
    await _deafen(hub)
    await _publish(bus, channel, *numbers)
    return channel, sink


async def _resumes_once_then_live(hub: Hub, bus: EventBus, channel: str, sink: Collector) -> None:
    """Nothing of the gap was handed on: the subscriber, told once, resumes from m0 on its
    own; what comes after the gap is live again."""
    await _live_after_every_replay(hub, bus, channel, sink)
    assert sink.texts() == ["m0", "live"]
    assert sink.interruptions == 1


async def test_a_gap_longer_than_the_replay_limit_interrupts_instead_of_skipping(
    gated: tuple[Hub, GatedBus, GatedTopology],
) -> None:
    hub, bus, _ = gated
    channel, sink = await _subscribed_at_m0(hub, bus)
    conn = hub._links[SINGLE].conn
    assert conn is not None
    # Redis drops the subscription (as a node does when a slot moves away), and the
    # connection is lost too while that is being repaired: two repairs of one gap.
    conn.unsubscribe(pubsub_channel(channel).encode())
    await _publish(bus, channel, 1, 2, 3, 4, 5)  # five events missed: more than it replays
    hub.rebuild("test")
    await _until(sink, lambda: sink.interruptions > 0)
    await _resumes_once_then_live(hub, bus, channel, sink)


async def test_an_interrupted_gap_is_not_reported_again_by_the_next_rebuild(
    gated: tuple[Hub, GatedBus, GatedTopology],
) -> None:
    hub, bus, _ = gated
    channel, sink = await _deaf_through(hub, bus, 1, 2, 3, 4, 5)
    hub.rebuild("test")
    await _until(sink, lambda: sink.interruptions > 0)
    # A quiet room: no event moves the channel on before the connection is rebuilt again.
    await _rebuild(hub, "again")
    await _resumes_once_then_live(hub, bus, channel, sink)


async def test_a_channel_lost_again_while_its_gap_is_replayed_is_told_once(
    gated: tuple[Hub, GatedBus, GatedTopology],
) -> None:
    hub, bus, _ = gated
    channel, sink = await _deaf_through(hub, bus, 1, 2, 3, 4, 5)
    bus.gate.close()
    hub.rebuild("test")
    await bus.gate.arrived.wait()  # the gap's replay is reading
    await _rebuild(hub, "again")  # and the new connection is lost too
    bus.gate.open()
    await _until(sink, lambda: sink.interruptions > 0)
    await _resumes_once_then_live(hub, bus, channel, sink)


async def test_a_gap_opened_while_the_last_was_replayed_is_replayed_too(
    gated: tuple[Hub, GatedBus, GatedTopology],
) -> None:
    hub, bus, topology = gated
    channel, sink = await _deaf_through(hub, bus, 1, 2)
    bus.gate.close()
    hub.rebuild("test")
    await bus.gate.arrived.wait()  # the first gap's replay is reading...
    topology.gate.close()
    hub.rebuild("again")  # ...when the connection is lost again, and stays down a while
    await topology.gate.arrived.wait()
    bus.gate.open()
    await sink.until(3)  # the first gap, replayed
    # Published while nobody listens: the second gap ("live" may fall in it too).
    await _publish(bus, channel, 3)
    topology.gate.open()
    await _live_after_every_replay(hub, bus, channel, sink)
    assert sink.texts() == ["m0", "m1", "m2", "m3", "live"]
    assert sink.interruptions == 0


#: Publishes N numbered events in one pipeline, from a process of its own (argv: url, channel, N).
_PUBLISHER = """
import sys
from redis import Redis
from chorus_common.events import EventBus, pubsub_channel
url, channel, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = Redis.from_url(url)
with client.pipeline(transaction=False) as pipe:
    for n in range(count):
        body = EventBus.encode(channel, "message", {"message": f"b{n}", "pad": "x" * 200}, "t")
        pipe.publish(pubsub_channel(channel), b'{"id":"%d-0",' % (n + 1) + body[1:])
    pipe.execute()
"""


async def test_a_canary_stuck_behind_a_moving_backlog_does_not_rebuild(
    hub: Hub, bus: EventBus, redis_url: str
) -> None:
    channel = _channel()
    # 0.3 ms of blocked loop per event: 10,000 events (~3 MB, many reads) take the hub
    # ~3 s, and a canary published meanwhile waits behind them well past its timeout.
    sink = Collector(stall=0.0003)
    canary = Canary(hub=hub, bus=bus, instance="busy-test", interval=0.05, timeout=1.0)
    await canary.start()
    try:
        await hub.subscribe(channel, sink)
        async with asyncio.timeout(5):
            while not canary.healthy:
                await asyncio.sleep(0.05)
        rebuilds = hub.rebuilds
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PUBLISHER, redis_url, channel, "10000"
        )
        await sink.until(10_000, timeout=30)
        assert await publisher.wait() == 0
        assert sink.texts() == [f"b{n}" for n in range(10_000)]
        assert hub.rebuilds == rebuilds  # late canaries, but never a rebuild
        async with asyncio.timeout(5):
            while not canary.healthy:
                await asyncio.sleep(0.05)
    finally:
        await canary.stop()


async def test_a_history_read_ahead_of_pub_sub_does_not_hide_live_events_from_others(
    hub: Hub, bus: EventBus
) -> None:
    channel = _channel()
    live, joining = Collector(), Collector()
    await hub.subscribe(channel, live)
    await hub.subscribe(channel, joining)
    # The joining subscriber read history up to an id whose pub/sub message has not been
    # dispatched yet (its read ran ahead of the connection): that event is still the
    # others' to receive when it arrives.
    conn = hub._links[SINGLE].conn
    assert conn is not None
    assert conn._transport is not None
    conn._transport.pause_reading()  # the pub/sub connection lags behind the history read
    try:
        ahead = await bus.publish(channel, "message", {"message": "racing"}, sender="t")
        hub.note_position(channel, ahead.id)
    finally:
        conn._transport.resume_reading()
    await live.until(1)
    await bus.publish(channel, "message", {"message": "next"}, sender="t")
    await live.until(2)
    assert live.texts() == ["racing", "next"]
