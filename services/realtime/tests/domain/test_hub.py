"""The hub on a real Redis: subscription races, and repairing a deaf connection."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import orjson

from chorus_common.events import EventBus, pubsub_channel, room_channel
from chorus_common.redis_client import RedisEndpoint
from chorus_realtime.domain.canary import Canary
from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.domain.hub import Batch, Hub
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


async def test_a_gap_longer_than_the_replay_limit_interrupts_instead_of_skipping(
    redis_url: str, bus: EventBus
) -> None:
    topology = SingleTopology(RedisEndpoint(url=redis_url), client_name="hub-test")
    hub = Hub(topology=topology, bus=bus, client_name="hub-test", replay_limit=3)
    await hub.start()
    try:
        channel, sink = _channel(), Collector()
        await hub.subscribe(channel, sink)
        first = await bus.publish(channel, "message", {"message": "m0"}, sender="t")
        await sink.until(1)
        hub.note_position(channel, first.id)
        conn = hub._links[SINGLE].conn
        assert conn is not None
        conn.unsubscribe(pubsub_channel(channel).encode())  # deaf to the channel
        for n in range(1, 6):  # five events missed: more than the hub may replay
            await bus.publish(channel, "message", {"message": f"m{n}"}, sender="t")
        hub.rebuild("test")
        async with asyncio.timeout(10):
            while not sink.interruptions:
                sink.changed.clear()
                await sink.changed.wait()
        # Nothing of the gap was handed on: the subscriber resumes from m0 on its own.
        assert sink.texts() == ["m0"]
        assert sink.interruptions == 1
    finally:
        await hub.stop()


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
