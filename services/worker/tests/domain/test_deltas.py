"""DeltaPublisher: every token reaches the room, in order, in as few events as the timing allows."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chorus_common.events import EventBus, room_channel, stream_key
from chorus_common.redis_client import create_redis
from chorus_devstack.ports import free_port
from chorus_worker.domain.deltas import DeltaPublisher

from ..harness import Harness


async def _deltas(harness: Harness, room: str) -> list[dict[str, object]]:
    entries = await harness.queue.xrange(stream_key(room_channel(room)))
    return [orjson.loads(fields[b"e"])["data"] for _, fields in entries]


@pytest.mark.parametrize("interval", [0.0, 0.005])
async def test_every_token_arrives_in_order_however_they_interleave(
    harness: Harness, interval: float
) -> None:
    rng = random.Random(7)
    for attempt in range(20):
        room = f"r{attempt}"
        publisher = DeltaPublisher(
            harness.bus, room_channel(room), reply_to="1-0", interval=interval
        )
        publisher.start()
        tokens = [f" t{n}" for n in range(rng.randint(1, 40))]
        for token in tokens:
            publisher.add(token)
            for _ in range(rng.randint(0, 3)):  # let the publisher run, or not
                await asyncio.sleep(0)
        await publisher.close()
        events = await _deltas(harness, room)
        assert "".join(str(e["delta"]) for e in events) == "".join(tokens) == publisher.text
        assert [e["index"] for e in events] == list(range(len(events)))
        assert {e["reply_to"] for e in events} == {"1-0"}
        assert publisher.events == len(events)


async def test_the_first_token_is_not_held_back(harness: Harness) -> None:
    publisher = DeltaPublisher(harness.bus, room_channel("first"), reply_to="1-0", interval=30)
    publisher.start()
    publisher.add("Hello")

    async def published() -> bool:
        return bool(await _deltas(harness, "first"))

    deadline = asyncio.get_running_loop().time() + 5
    while not await published():  # long before the 30 s interval
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    publisher.add(" world")
    await publisher.close()  # closing flushes at once, without waiting out the interval
    assert [e["delta"] for e in await _deltas(harness, "first")] == ["Hello", " world"]


async def test_nothing_added_publishes_nothing(harness: Harness) -> None:
    publisher = DeltaPublisher(harness.bus, room_channel("quiet"), reply_to="1-0", interval=0)
    publisher.start()
    await publisher.close()
    assert await _deltas(harness, "quiet") == []


async def test_a_publishing_failure_surfaces() -> None:
    redis = create_redis(f"redis://127.0.0.1:{free_port()}/0", client_name="t", retries=0)
    publisher = DeltaPublisher(
        EventBus(redis, history_size=1000, history_ttl=86_400),
        room_channel("gone"),
        reply_to="1-0",
        interval=0,
    )
    publisher.start()
    publisher.add("x")
    with pytest.raises(RedisConnectionError):
        await publisher.close()
    await redis.aclose()
