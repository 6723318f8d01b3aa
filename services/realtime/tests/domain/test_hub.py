"""The hub on a real Redis: subscription races, and repairing a deaf connection."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import orjson
import pytest

from chorus_common.events import EventBus, pubsub_channel, room_channel
from chorus_common.redis_client import create_redis
from chorus_realtime.domain.canary import Canary
from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.domain.hub import Hub


class Collector:
    """A sink that records frames."""

    def __init__(self) -> None:
        self.frames: list[OutFrame] = []
        self.changed = asyncio.Event()

    def deliver(self, frame: OutFrame) -> None:
        self.frames.append(frame)
        self.changed.set()

    def texts(self) -> list[str]:
        return [orjson.loads(f.text)["data"]["message"] for f in self.frames]

    async def until(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.frames) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[EventBus]:
    redis = create_redis(redis_url, client_name="hub-tests")
    yield EventBus(redis, history_size=1000, history_ttl=86_400)
    await redis.aclose()


@pytest.fixture
async def hub(redis_url: str, bus: EventBus) -> AsyncIterator[Hub]:
    hub = Hub(redis_url=redis_url, bus=bus, client_name="hub-test")
    await hub.start()
    yield hub
    await hub.stop()


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
        # Make the connection deaf behind the hub's back: Redis drops its subscriptions
        # while the socket stays open and error-free.
        conn = hub._conn
        assert conn is not None
        conn.unsubscribe(pubsub_channel(channel).encode(), pubsub_channel(canary.channel).encode())
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
