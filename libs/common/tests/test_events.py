"""The events module: envelope, channels, atomic publish, history and resume offsets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import hiredis
import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from chorus_common.events import (
    CLUSTER,
    FROM_START,
    PLAIN,
    Envelope,
    EventBus,
    EventRedis,
    InvalidChannelError,
    InvalidStreamIdError,
    KeyLayout,
    parse_stream_id,
    pubsub_channel,
    room_channel,
    stream_key,
    user_channel,
)
from chorus_common.redis_client import create_cluster, create_redis
from chorus_common.settings import parse_cluster_seeds
from chorus_devstack.servers import RunningRedis, RunningRedisCluster


@pytest.fixture
async def redis(redis_server: RunningRedis) -> AsyncIterator[Redis]:
    client = create_redis(redis_server.url, client_name="test-events", socket_timeout=None)
    yield client
    await client.aclose()


@pytest.fixture
async def cluster(redis_cluster: RunningRedisCluster) -> AsyncIterator[RedisCluster]:
    seeds = parse_cluster_seeds(redis_cluster.seeds)
    assert seeds is not None
    client = create_cluster(seeds, client_name="test-events")
    yield client
    await client.aclose()


@dataclass
class Store:
    """Where channels live, for tests that hold on one Redis and on a cluster alike."""

    client: EventRedis
    layout: KeyLayout

    def bus(self, *, history_size: int = 1000, history_ttl: int = 86_400) -> EventBus:
        return EventBus(
            self.client, history_size=history_size, history_ttl=history_ttl, layout=self.layout
        )


@pytest.fixture(params=["one redis", "cluster"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "cluster":
        return Store(request.getfixturevalue("cluster"), CLUSTER)
    return Store(request.getfixturevalue("redis"), PLAIN)


class ShardSubscriber:
    """A bare SSUBSCRIBE on the node serving a shard channel (redis-py's asyncio client
    has no sharded pub/sub)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader()

    @classmethod
    async def open(cls, cluster: RedisCluster, name: str) -> ShardSubscriber:
        await cluster.initialize()
        node = cluster.get_node_from_key(name)
        reader, writer = await asyncio.open_connection(node.host, node.port)
        subscriber = cls(reader, writer)
        writer.write(f"*2\r\n$10\r\nSSUBSCRIBE\r\n${len(name)}\r\n{name}\r\n".encode())
        assert (await subscriber.next())[0] == b"ssubscribe"
        return subscriber

    async def next(self) -> list[bytes]:
        while True:
            reply = self.parser.gets()
            if reply is not False:
                assert isinstance(reply, list), reply
                return reply
            self.parser.feed(await asyncio.wait_for(self.reader.read(65536), 5))

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def channel() -> str:
    return room_channel(f"test-{os.urandom(6).hex()}")


async def _next_message(pubsub: PubSub) -> bytes:
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if message is not None:
            data: bytes = message["data"]
            return data


async def _subscribed(redis: Redis, channel: str) -> PubSub:
    """A pub/sub connection whose SUBSCRIBE Redis has confirmed (so nothing is missed)."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(pubsub_channel(channel))
    while True:
        message = await pubsub.get_message(timeout=5)
        if message is not None and message["type"] == "subscribe":
            return pubsub


async def _collect(redis: Redis, channel: str, count: int, ready: asyncio.Event) -> list[bytes]:
    pubsub = await _subscribed(redis, channel)
    ready.set()
    received: list[bytes] = []
    try:
        while len(received) < count:
            # None also means "a subscribe confirmation was skipped": keep reading.
            message = await asyncio.wait_for(_next_message(pubsub), timeout=5)
            received.append(message)
    finally:
        await pubsub.aclose()
    return received


def test_channel_names() -> None:
    assert room_channel("lobby") == "room:lobby"
    assert user_channel(42) == "user:42"
    assert stream_key("room:lobby") == "chorus:stream:room:lobby"
    assert pubsub_channel("room:lobby") == "chorus:pub:room:lobby"


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "../etc", "room:lobby", "-lead", "é"])
def test_bad_room_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidChannelError):
        room_channel(bad)


@pytest.mark.parametrize("bad", ["1-", "abc", "1-2-3", "", "$", "+", "(1-0"])
def test_bad_stream_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidStreamIdError):
        parse_stream_id(bad)


async def test_publish_is_delivered_with_its_stream_id(redis: Redis, channel: str) -> None:
    bus = EventBus(redis, history_size=1000, history_ttl=86_400)
    ready = asyncio.Event()
    collector = asyncio.create_task(_collect(redis, channel, 1, ready))
    await ready.wait()
    published = await bus.publish(channel, "message", {"message": "hi"}, sender="7")
    [live] = await collector
    assert live == published.payload
    envelope = Envelope.from_json(live)
    assert envelope.id == published.id
    assert envelope.channel == channel
    assert envelope.type == "message"
    assert envelope.data == {"message": "hi"}
    assert envelope.from_ == "7"
    assert envelope.ts.endswith("Z")
    assert orjson.loads(live)["from"] == "7"


async def test_concurrent_publishes_get_increasing_ids_in_delivery_order(
    redis: Redis, channel: str
) -> None:
    bus = EventBus(redis, history_size=1000, history_ttl=86_400)
    ready = asyncio.Event()
    collector = asyncio.create_task(_collect(redis, channel, 200, ready))
    await ready.wait()
    published = await asyncio.gather(
        *(bus.publish(channel, "message", {"n": n}, sender="t") for n in range(200))
    )
    live = await collector
    live_ids = [Envelope.from_json(raw).id for raw in live]
    assert len(live_ids) == 200
    # Delivery order is stream order, and stream ids strictly increase.
    parsed = [parse_stream_id(i) for i in live_ids if i]
    assert parsed == sorted(parsed)
    assert len(set(parsed)) == 200
    assert sorted(live_ids) == sorted(p.id for p in published)  # type: ignore[type-var]
    # What was delivered live is byte for byte what history holds.
    stored = await bus.latest(channel, count=200)
    assert stored == live


async def test_publish_is_atomic_history_never_lags_delivery(
    redis: Redis, redis_server: RunningRedis, channel: str
) -> None:
    # A subscriber that receives an event and immediately reads history must find it there:
    # XADD and PUBLISH run in one script, so no client sees one without the other.
    bus = EventBus(redis, history_size=1000, history_ttl=86_400)
    reader = create_redis(redis_server.url, client_name="test-reader")
    try:
        first = await bus.publish(channel, "message", {"n": -1}, sender="t")
        pubsub = await _subscribed(redis, channel)

        async def publish_all() -> None:
            for n in range(50):
                await bus.publish(channel, "message", {"n": n}, sender="t")

        publisher = asyncio.create_task(publish_all())
        seen = 0
        while seen < 50:
            message = await asyncio.wait_for(_next_message(pubsub), timeout=5)
            event_id = Envelope.from_json(message).id
            assert event_id is not None
            history = await EventBus(reader, history_size=1000, history_ttl=86_400).history(
                channel, first.id
            )
            assert event_id in {Envelope.from_json(e).id for e in history.events}
            seen += 1
        await publisher
        await pubsub.aclose()
    finally:
        await reader.aclose()


async def test_history_since_an_offset(store: Store, channel: str) -> None:
    bus = store.bus()
    ids = [(await bus.publish(channel, "message", {"n": n}, sender="t")).id for n in range(10)]
    history = await bus.history(channel, ids[3])
    assert history.recovered is True
    assert [orjson.loads(e)["data"]["n"] for e in history.events] == list(range(4, 10))
    assert history.last_id == ids[-1]
    assert history.epoch == ids[0]
    assert history.more is False
    caught_up = await bus.history(channel, ids[-1])
    assert caught_up.recovered is True
    assert caught_up.events == []


async def test_history_pages(store: Store, channel: str) -> None:
    bus = store.bus()
    ids = [(await bus.publish(channel, "message", {"n": n}, sender="t")).id for n in range(7)]
    page = await bus.history(channel, ids[0], limit=3)
    assert page.more is True
    assert page.last_id == ids[3]
    rest = await bus.history(channel, page.last_id, limit=10)
    assert [orjson.loads(e)["data"]["n"] for e in rest.events] == [4, 5, 6]


async def test_history_with_a_size_bound_returns_the_same_or_nothing(
    store: Store, channel: str
) -> None:
    bus = store.bus()
    ids = [
        (await bus.publish(channel, "message", {"n": n, "pad": "x" * 100}, sender="t")).id
        for n in range(10)
    ]
    unbounded = await bus.history(channel, ids[3])
    bounded = await bus.history(channel, ids[3], max_bytes=10_000)
    assert bounded == unbounded
    assert bounded.too_large is False
    paged = await bus.history(channel, ids[0], limit=3, max_bytes=10_000)
    assert (paged.more, paged.last_id, len(paged.events)) == (True, ids[3], 3)
    # Six events of ~170 bytes after ids[3]: over 500 bytes, Redis sends none of them.
    over = await bus.history(channel, ids[3], max_bytes=500)
    assert (over.too_large, over.events, over.recovered) == (True, [], True)
    assert (over.last_id, over.epoch) == (ids[-1], ids[0])
    gone = await bus.history(channel, "1-0", max_bytes=10_000)
    assert gone.recovered is False


async def test_trimmed_offset_is_not_recovered(store: Store, channel: str) -> None:
    bus = store.bus(history_size=5)
    ids = [(await bus.publish(channel, "message", {"n": n}, sender="t")).id for n in range(300)]
    # MAXLEN ~ trims whole radix-tree nodes, so the length is approximate but bounded.
    assert await store.client.xlen(store.layout.stream(channel)) < 300
    history = await bus.history(channel, ids[0])
    assert history.recovered is False
    # What is still there is returned, oldest first, so the client can show something.
    numbers = [orjson.loads(e)["data"]["n"] for e in history.events]
    assert numbers == sorted(numbers)
    assert numbers[-1] == 299


async def test_reset_stream_is_detected(redis: Redis, channel: str) -> None:
    bus = EventBus(redis, history_size=1000, history_ttl=86_400)
    old = await bus.publish(channel, "message", {"n": 1}, sender="t")
    await redis.delete(stream_key(channel), f"chorus:epoch:{channel}")
    # A reset stream (Redis restarted without its data) starts over at the current time; a
    # restart takes far longer than the millisecond in which ids could repeat.
    old_ms = parse_stream_id(old.id)[0]
    while (await redis.time())[0] * 1000 + (await redis.time())[1] // 1000 <= old_ms:
        await asyncio.sleep(0.001)
    new = await bus.publish(channel, "message", {"n": 2}, sender="t")
    history = await bus.history(channel, old.id)
    assert history.recovered is False
    assert history.epoch == new.id


async def test_ephemeral_events_skip_history(redis: Redis, channel: str) -> None:
    bus = EventBus(redis, history_size=1000, history_ttl=86_400)
    ready = asyncio.Event()
    collector = asyncio.create_task(_collect(redis, channel, 1, ready))
    await ready.wait()
    await bus.publish_ephemeral(channel, "typing", {}, sender="3")
    [live] = await collector
    assert Envelope.from_json(live).id is None
    assert await redis.exists(stream_key(channel)) == 0


async def test_history_expires_with_the_channel(store: Store, channel: str) -> None:
    bus = store.bus(history_ttl=60)
    await bus.publish(channel, "message", {}, sender="t")
    assert 0 < await store.client.ttl(store.layout.stream(channel)) <= 60
    assert 0 < await store.client.ttl(store.layout.epoch(channel)) <= 60


async def test_position_is_the_newest_id_and_the_epoch(store: Store, channel: str) -> None:
    bus = store.bus()
    empty = await bus.position(channel)
    assert (empty.last_id, empty.epoch) == (None, None)
    first = await bus.publish(channel, "message", {"n": 1}, sender="t")
    second = await bus.publish(channel, "message", {"n": 2}, sender="t")
    await bus.publish_ephemeral(channel, "typing", {}, sender="t")
    position = await bus.position(channel)
    assert position.last_id == second.id
    assert position.epoch == first.id
    # Resuming from the position replays nothing and loses nothing.
    history = await bus.history(channel, position.last_id)
    assert history.recovered is True
    assert history.events == []


async def test_history_from_the_start_while_the_stream_holds_its_first_event(
    redis: Redis, channel: str
) -> None:
    bus = EventBus(redis, history_size=10, history_ttl=0)
    empty = await bus.history(channel, FROM_START)
    assert (empty.recovered, empty.events) == (True, [])
    ids = [(await bus.publish(channel, "message", {"n": n}, sender="1")).id for n in range(3)]
    whole = await bus.history(channel, FROM_START)
    assert whole.recovered is True
    assert [orjson.loads(e)["id"] for e in whole.events] == ids
    # Once the head was trimmed, "everything" is no longer there: not recovered.
    for n in range(300):
        await bus.publish(channel, "message", {"n": n}, sender="1")
    assert (await bus.history(channel, FROM_START)).recovered is False


def test_key_layouts_put_a_channel_in_one_hash_slot_on_a_cluster() -> None:
    assert stream_key("room:lobby") == PLAIN.stream("room:lobby") == "chorus:stream:room:lobby"
    assert CLUSTER.stream("room:lobby") == "chorus:stream:{room:lobby}"
    assert CLUSTER.epoch("room:lobby") == "chorus:epoch:{room:lobby}"
    assert CLUSTER.pubsub("room:lobby") == "chorus:pub:{room:lobby}"
    assert CLUSTER.channel_of("chorus:pub:{room:lobby}") == "room:lobby"
    assert PLAIN.channel_of("chorus:pub:room:lobby") == "room:lobby"
    assert CLUSTER.pattern("chorus:stream:", "room:") == "chorus:stream:{room:*}"
    slots = {key_slot(k.encode()) for k in (CLUSTER.stream("room:a"), CLUSTER.pubsub("room:a"))}
    assert len(slots) == 1
    assert (PLAIN.publish_command, CLUSTER.publish_command) == ("PUBLISH", "SPUBLISH")


async def test_a_bus_refuses_a_layout_that_does_not_fit_its_client(
    redis: Redis, cluster: RedisCluster
) -> None:
    with pytest.raises(ValueError, match="CLUSTER"):
        EventBus(cluster, history_size=10, history_ttl=0)
    with pytest.raises(ValueError, match="PLAIN"):
        EventBus(redis, history_size=10, history_ttl=0, layout=CLUSTER)


async def test_on_a_cluster_a_publish_is_one_script_on_the_channels_node_and_spublished(
    cluster: RedisCluster, channel: str
) -> None:
    bus = EventBus(cluster, history_size=1000, history_ttl=600, layout=CLUSTER)
    subscriber = await ShardSubscriber.open(cluster, CLUSTER.pubsub(channel))
    try:
        first = await bus.publish(channel, "message", {"n": 1}, sender="7")
        kind, name, live = await subscriber.next()
        assert (kind, name.decode(), live) == (b"smessage", CLUSTER.pubsub(channel), first.payload)
        typing = await bus.publish_ephemeral(channel, "typing", {}, sender="7")
        assert (await subscriber.next())[2] == typing
    finally:
        subscriber.close()
    # The stream and its epoch are hash-tagged keys on the node that owns the slot.
    assert await bus.latest(channel, count=5) == [first.payload]
    assert await cluster.get(CLUSTER.epoch(channel)) == first.id.encode()
    assert await cluster.exists(stream_key(channel)) == 0
