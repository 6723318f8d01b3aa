"""Settings set once for the whole system hold for every service that reads them.

The suite's stack sets ``ARQ_QUEUE_NAME``, ``HISTORY_SIZE`` and ``HISTORY_TTL`` once
(``conftest.py``). Every producer of jobs — the api, realtime, the gateway — must enqueue
on that queue, or the worker never runs their jobs; every publisher of events — the api,
realtime, the worker — must trim and expire a channel's history with those values, since
the publish script applies them on every event (a publisher with values of its own would
undo the others').
"""

from __future__ import annotations

import os

import asyncpg
import httpx
import orjson
from openai import AsyncOpenAI
from redis.asyncio import Redis

from chorus_client import RoomClient
from chorus_common.events import EventBus, room_channel, stream_key, user_channel
from chorus_devstack.stack import Stack
from chorus_e2e.accounts import sign_up
from chorus_e2e.polling import eventually

#: arq's default queue: nothing may ever land there in this stack.
DEFAULT_QUEUE = "arq:queue"


class History:
    """The stack's history settings, and what overfilling a channel means with them.

    ``MAXLEN ~ size`` removes whole nodes of a stream (at most ``stream-node-max-entries``
    = 100 entries each), so a trimmed stream stays below twice the size, and an untrimmed
    one keeps everything it was filled with.
    """

    def __init__(self, stack: Stack) -> None:
        self.size = int(stack.options.shared_env["HISTORY_SIZE"])
        self.ttl = int(stack.options.shared_env["HISTORY_TTL"])
        self.filled = 3 * self.size
        assert self.size <= 100, "a node of 100 entries must not exceed the size"


async def overfill(redis: Redis, history: History, channel: str, sender: str) -> None:
    """Fill ``channel``'s history far beyond ``HISTORY_SIZE`` and make it immortal.

    The entries are ordinary events (the persister may read them), written without a
    bound: only the next publisher's own settings can bring the stream back in line.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(history.filled):
            body = EventBus.encode(channel, "message", {"message": f"filler {i}"}, sender)
            pipe.xadd(stream_key(channel), {"e": body})
        pipe.persist(stream_key(channel))
        await pipe.execute()


async def assert_trimmed(redis: Redis, history: History, channel: str, who: str) -> None:
    """The stream was trimmed to ~``HISTORY_SIZE`` and expires within ``HISTORY_TTL``."""
    length = await redis.xlen(stream_key(channel))
    ttl = await redis.ttl(stream_key(channel))
    assert length < 2 * history.size, f"{who}'s event left {length} of {history.filled} entries"
    assert 0 < ttl <= history.ttl, f"{who}'s event set a TTL of {ttl}s"


async def newest_type(redis: Redis, channel: str) -> str | None:
    """The ``type`` of the newest event in ``channel``'s history."""
    entries = await redis.xrevrange(stream_key(channel), count=1)
    return str(orjson.loads(entries[0][1][b"e"])["type"]) if entries else None


async def test_one_history_setting_bounds_what_the_api_the_worker_and_realtime_publish(
    stack: Stack, ingress: str, http: httpx.AsyncClient, ops: httpx.AsyncClient, redis: Redis
) -> None:
    history = History(stack)
    sink = stack.url("smtp-sink")
    # The worker: its welcome notification, published once the mail is accepted — held at
    # RCPT while the user's history is overfilled.
    await ops.post(f"{sink}/hold", json={"stage": "rcpt", "count": 1, "seconds": 20})
    try:
        user = await sign_up(http, "historian")
        await eventually(
            lambda: ops.get(f"{sink}/messages"),
            until=lambda r: r.json()["held"] == 1,
            what="the welcome mail's SMTP conversation",
        )
        channel = user_channel(user.id)
        await overfill(redis, history, channel, str(user.id))
    finally:
        await ops.post(f"{sink}/release")
    await eventually(
        lambda: newest_type(redis, channel),
        until=lambda kind: kind == "welcome.sent",
        what="the worker's welcome notification",
    )
    await assert_trimmed(redis, history, channel, "the worker")

    # The api: an order's notification on the same channel.
    await overfill(redis, history, channel, str(user.id))
    response = await http.post(
        "/api/orders", json={"item": "ink", "quantity": 1, "amount_cents": 100}, headers=user.auth
    )
    assert response.status_code == 201, response.text
    assert await newest_type(redis, channel) == "order.created"
    await assert_trimmed(redis, history, channel, "the api")

    # Realtime: a chat message in a room.
    room = f"history-{os.urandom(4).hex()}"
    await overfill(redis, history, room_channel(room), str(user.id))
    async with RoomClient([ingress], room, user.token) as client:
        await client.wait_subscribed()
        await client.say("one more", ref="last")
        await client.wait_for(lambda: bool(client.of_type("ack")))
        assert await newest_type(redis, room_channel(room)) == "message"
        await assert_trimmed(redis, history, room_channel(room), "realtime")


async def test_one_queue_setting_moves_every_producer_and_the_worker(
    stack: Stack, ingress: str, http: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis
) -> None:
    assert stack.options.shared_env["ARQ_QUEUE_NAME"] != DEFAULT_QUEUE
    user = await sign_up(http, "producer")

    # The api enqueued the welcome mail; the worker ran it from the shared queue (and the
    # api reads its status from there).
    job = await eventually(
        lambda: http.get(f"/api/jobs/welcome:{user.id}", headers=user.auth),
        until=lambda r: r.json().get("status") == "complete",
        what="the api's welcome job, run by the worker",
    )
    assert job.json()["result"]["status"] == "sent"

    # Realtime enqueued the assistant's answer; the worker streamed it into the room.
    room = f"queue-{os.urandom(4).hex()}"
    async with RoomClient([ingress], room, user.token) as client:
        await client.wait_subscribed()
        await client.say("@assistant are you there?")
        await client.wait_for(lambda: bool(client.of_type("ai.done")), timeout=30)

    # The gateway enqueued the usage of a completion; the worker recorded it.
    async with AsyncOpenAI(base_url=f"{ingress}/v1", api_key=user.token, max_retries=0) as llm:
        await llm.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "hello"}]
        )
    await eventually(
        lambda: db.fetch("SELECT 1 FROM llm_usage_events WHERE user_id = $1", user.id),
        what="the gateway's usage job, run by the worker",
    )

    assert not await redis.exists(DEFAULT_QUEUE), "a producer enqueued on arq's default queue"
