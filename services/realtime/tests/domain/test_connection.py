"""A connection's delivery path on a real Redis: straight to the socket, or queued in order."""

from __future__ import annotations

import asyncio
import os

import orjson

from chorus_common.events import EventBus, pubsub_channel, room_channel
from chorus_realtime.domain.connection import Connection
from chorus_realtime.domain.hub import Batch, Hub
from chorus_realtime.metrics import DELIVERIES


class Socket:
    """Stands in for the WebSocket writer's direct path: records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.takes_data = True
        self.changed = asyncio.Event()

    def write(self, data: bytes) -> bool:
        if not self.takes_data:
            return False
        self.writes.append(data)
        self.changed.set()
        return True

    def messages(self) -> list[str]:
        return [orjson.loads(text)["data"]["message"] for text in frames(b"".join(self.writes))]

    async def until(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.messages()) < count:
                self.changed.clear()
                await self.changed.wait()


def frames(data: bytes) -> list[bytes]:
    """The payloads of unmasked WebSocket text frames (RFC 6455 5.2), in order."""
    out, pos = [], 0
    while pos < len(data):
        assert data[pos] == 0x81, "a final text frame"
        length, pos = data[pos + 1], pos + 2
        if length == 126:
            length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        out.append(data[pos : pos + length])
        pos += length
    return out


def connection(hub: Hub, bus: EventBus, socket: Socket | None) -> Connection:
    conn = Connection(
        user="7",
        transport="ws",
        hub=hub,
        bus=bus,
        max_queue_frames=100,
        max_queue_bytes=100_000,
        replay_max=100,
    )
    if socket is not None:
        conn.direct = socket.write
    return conn


async def publish_at_once(bus: EventBus, *events: tuple[str, str, str]) -> None:
    """Publish ``(channel, id, message)`` envelopes in one transaction: one read for the hub."""
    async with bus.redis.pipeline(transaction=True) as pipe:
        for channel, stream_id, message in events:
            body = EventBus.encode(channel, "message", {"message": message}, "t")
            pipe.publish(pubsub_channel(channel), b'{"id":"%s",' % stream_id.encode() + body[1:])
        await pipe.execute()


def _channel() -> str:
    return room_channel(f"conn-{os.urandom(4).hex()}")


async def test_live_events_go_straight_to_the_socket_one_write_per_read(
    hub: Hub, bus: EventBus
) -> None:
    channel, socket = _channel(), Socket()
    conn = connection(hub, bus, socket)
    await conn.subscribe(channel, None)
    [subscribed] = conn.take_all()
    assert orjson.loads(subscribed.text)["type"] == "subscribed"
    delivered = DELIVERIES.count
    await publish_at_once(bus, *((channel, f"{n}-0", f"m{n}") for n in (1, 2, 3)))
    await socket.until(3)
    assert socket.messages() == ["m1", "m2", "m3"]
    assert len(socket.writes) == 1  # one read from Redis, one write to the client
    assert len(conn.outbox) == 0
    assert DELIVERIES.count - delivered == 3
    assert conn.last_ids == {channel: "3-0"}


async def test_a_socket_that_pushes_back_gets_its_events_queued_in_order(
    hub: Hub, bus: EventBus
) -> None:
    channel, socket = _channel(), Socket()
    conn = connection(hub, bus, socket)
    await conn.subscribe(channel, None)
    conn.take_all()
    socket.takes_data = False
    await publish_at_once(bus, (channel, "1-0", "m1"))
    await publish_at_once(bus, (channel, "2-0", "m2"))
    async with asyncio.timeout(10):
        while len(conn.outbox) < 2:
            await asyncio.sleep(0.01)
    # The socket takes data again, but two events wait in the queue: the next one must
    # not overtake them.
    socket.takes_data = True
    await publish_at_once(bus, (channel, "3-0", "m3"))
    async with asyncio.timeout(10):
        while len(conn.outbox) < 3:
            await asyncio.sleep(0.01)
    assert socket.writes == []
    assert [orjson.loads(f.text)["data"]["message"] for f in conn.take_all()] == ["m1", "m2", "m3"]
    await publish_at_once(bus, (channel, "4-0", "m4"))  # caught up: straight through again
    await socket.until(1)
    assert socket.messages() == ["m4"]


async def test_a_connection_without_a_direct_path_queues_everything(
    hub: Hub, bus: EventBus
) -> None:
    channel = _channel()
    conn = connection(hub, bus, None)  # as an SSE stream is
    await conn.subscribe(channel, None)
    await publish_at_once(bus, (channel, "1-0", "m1"), (channel, "2-0", "m2"))
    async with asyncio.timeout(10):
        while len(conn.outbox) < 3:
            await asyncio.sleep(0.01)
    texts = [f.text for f in conn.take_all()]
    assert [orjson.loads(t).get("data", {}).get("message") for t in texts] == [None, "m1", "m2"]


async def test_a_closing_connection_writes_nothing_more_directly(hub: Hub, bus: EventBus) -> None:
    channel, socket, witness = _channel(), Socket(), Recorder()
    conn = connection(hub, bus, socket)
    await conn.subscribe(channel, None)
    await hub.subscribe(channel, witness)
    conn.take_all()
    conn.close(1000, "")
    await publish_at_once(bus, (channel, "1-0", "m1"))
    await witness.until(1)  # the hub handed m1 to every sink of the channel
    assert socket.writes == []
    assert conn.direct is None


class Recorder:
    """A sink that keeps each batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.changed = asyncio.Event()

    def deliver(self, batch: Batch) -> bool:
        self.batches.append([orjson.loads(f.text)["data"]["message"] for f in batch.frames])
        self.changed.set()
        return False

    async def until(self, count: int) -> None:
        async with asyncio.timeout(10):
            while sum(map(len, self.batches)) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_a_read_with_two_channels_keeps_the_publish_order_per_socket(hub: Hub) -> None:
    a, b = _channel(), _channel()
    both, only_a = Recorder(), Recorder()
    await hub.subscribe(a, both)
    await hub.subscribe(b, both)
    await hub.subscribe(a, only_a)
    await publish_at_once(
        hub.bus, (a, "1-0", "a1"), (a, "2-0", "a2"), (b, "1-0", "b1"), (a, "3-0", "a3")
    )
    await both.until(4)
    await only_a.until(3)
    # Runs of one channel go out together; the order across channels is the publish order.
    assert both.batches == [["a1", "a2"], ["b1"], ["a3"]]
    assert only_a.batches == [["a1", "a2"], ["a3"]]
