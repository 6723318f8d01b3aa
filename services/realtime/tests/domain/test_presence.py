"""Presence across replicas, a dead replica dropping out, and the join/leave events."""

from __future__ import annotations

import asyncio
import os

import orjson
from redis.asyncio import Redis

from chorus_common.events import EventBus, stream_key
from chorus_realtime.domain.presence import CONNS_PREFIX, REPLICA_PREFIX, Presence


def bus_of(redis: Redis) -> EventBus:
    return EventBus(redis, history_size=1000, history_ttl=600)


async def room_events(redis: Redis, channel: str) -> list[dict]:
    """The channel's history, oldest first: what a client resuming from the start gets."""
    entries = await redis.xrange(stream_key(channel))
    return [orjson.loads(fields[b"e"]) | {"id": i.decode()} for i, fields in entries]


async def test_joins_count_users_across_replicas_and_dead_replicas_expire(redis: Redis) -> None:
    channel = f"room:presence-{os.urandom(4).hex()}"
    one = Presence(redis, bus_of(redis), replica=f"one.{os.urandom(2).hex()}", ttl=30)
    two = Presence(redis, bus_of(redis), replica=f"two.{os.urandom(2).hex()}", ttl=30)
    await one.heartbeat()
    await two.heartbeat()
    first = await one.join(channel, "a")
    assert first.user_connections == 1
    change = await two.join(channel, "a")
    assert (change.user_connections, change.members, change.event_id) == (2, 1, None)
    assert (await two.join(channel, "b")).members == 2
    assert await one.members(channel) == {"a": 2, "b": 1}
    # Replica two dies without cleaning up: once its key is gone, its members are too.
    await redis.delete(REPLICA_PREFIX + two.replica)
    assert await one.members(channel) == {"a": 1}
    change = await one.leave(channel, "a")
    assert (change.user_connections, change.members) == (0, 0)
    # Only a user's first connection joined and their last left; each event says who and
    # how many were then in the room, and its id is the one the change returned.
    events = await room_events(redis, channel)
    assert [(e["type"], e["data"], e["from"]) for e in events] == [
        ("join", {"count": 1, "user_id": "a"}, "a"),
        ("join", {"count": 2, "user_id": "b"}, "b"),
        ("leave", {"count": 0, "user_id": "a"}, "a"),
    ]
    assert events[0]["id"] == first.event_id
    assert events[2]["id"] == change.event_id


async def test_concurrent_joins_and_leaves_publish_counts_in_event_order(redis: Redis) -> None:
    # Users joining at once on two replicas: the count and its event are one step, so in
    # event order the counts are 1, 2, 3, … — never a later event with a smaller count.
    channel = f"room:concurrent-{os.urandom(4).hex()}"
    replicas = [
        Presence(redis, bus_of(redis), replica=f"r{n}.{os.urandom(2).hex()}", ttl=30)
        for n in range(2)
    ]
    for replica in replicas:
        await replica.heartbeat()
    users = [f"u{n}" for n in range(40)]
    joined = await asyncio.gather(
        *(replicas[n % 2].join(channel, user) for n, user in enumerate(users))
    )
    left = await asyncio.gather(
        *(replicas[n % 2].leave(channel, user) for n, user in enumerate(users))
    )

    events = await room_events(redis, channel)
    assert [e["type"] for e in events] == ["join"] * 40 + ["leave"] * 40
    assert [e["data"]["count"] for e in events] == [*range(1, 41), *range(39, -1, -1)]
    assert sorted(e["data"]["user_id"] for e in events[:40]) == sorted(users)
    # Each change's own answer names its event, with the count the event carries.
    by_id = {e["id"]: e["data"]["count"] for e in events}
    assert all(by_id[c.event_id] == c.members for c in (*joined, *left) if c.event_id)
    assert sum(c.event_id is not None for c in (*joined, *left)) == 80


async def test_connection_quota(redis: Redis) -> None:
    user = f"u{os.urandom(3).hex()}"
    one = Presence(redis, bus_of(redis), replica=f"one.{os.urandom(2).hex()}", ttl=30)
    await one.heartbeat()
    assert await one.acquire_connection(user, limit=2)
    assert await one.acquire_connection(user, limit=2)
    assert not await one.acquire_connection(user, limit=2)
    await one.release_connection(user)
    assert await one.acquire_connection(user, limit=2)
    await asyncio.gather(one.release_connection(user), one.release_connection(user))
    assert await redis.hgetall(CONNS_PREFIX + user) == {}
