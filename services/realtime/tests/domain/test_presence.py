"""Presence across replicas, a dead replica dropping out, and the join/leave events — on one
Redis and a cluster."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from chorus_common.events import CLUSTER, PLAIN, EventBus, EventRedis, KeyLayout
from chorus_common.redis_client import create_cluster
from chorus_common.settings import parse_cluster_seeds
from chorus_devstack.servers import RunningRedisCluster
from chorus_realtime.domain.presence import (
    ALIVE_PREFIX,
    CONNS_PREFIX,
    NAMES_PREFIX,
    PRESENCE_PREFIX,
    REPLICA_PREFIX,
    Presence,
    Present,
)


@pytest.fixture
async def cluster(redis_cluster: RunningRedisCluster) -> AsyncIterator[RedisCluster]:
    seeds = parse_cluster_seeds(redis_cluster.seeds)
    assert seeds is not None
    client = create_cluster(seeds, client_name="presence-tests")
    yield client
    await client.aclose()


def bus_of(events: EventRedis, layout: KeyLayout = PLAIN) -> EventBus:
    return EventBus(events, history_size=1000, history_ttl=600, layout=layout)


def _pair(redis: Redis, events: EventRedis, layout: KeyLayout) -> tuple[Presence, Presence]:
    return tuple(  # type: ignore[return-value]
        Presence(redis, bus_of(events, layout), replica=f"{name}.{os.urandom(2).hex()}", ttl=30)
        for name in ("one", "two")
    )


async def room_events(events: EventRedis, layout: KeyLayout, channel: str) -> list[dict]:
    """The channel's history, oldest first: what a client resuming from the start gets."""
    entries = await events.xrange(layout.stream(channel))
    return [orjson.loads(fields[b"e"]) | {"id": i.decode()} for i, fields in entries]


async def _joins_and_deaths(
    redis: Redis, events: EventRedis, layout: KeyLayout, channel: str
) -> None:
    one, two = _pair(redis, events, layout)
    await one.heartbeat()
    await two.heartbeat()
    first = await one.join(channel, "a", "Ada")
    assert first.user_connections == 1
    change = await two.join(channel, "a", "Ada")
    assert (change.user_connections, change.members, change.event_id) == (2, 1, None)
    assert (await two.join(channel, "b")).members == 2
    assert await one.members(channel) == {"a": Present(2, "Ada"), "b": Present(1, None)}
    # Replica two dies without cleaning up: once its keys expire, its members are gone too.
    await redis.delete(REPLICA_PREFIX + two.replica)
    await events.delete(layout.key(ALIVE_PREFIX, channel) + ":" + two.replica)
    assert await one.members(channel) == {"a": Present(1, "Ada")}
    change = await one.leave(channel, "a")
    assert (change.user_connections, change.members) == (0, 0)
    # Nobody left: no name is kept for them.
    assert await events.hgetall(layout.key(NAMES_PREFIX, channel)) == {}
    # Only a user's first connection joined and their last left; each event says who (and
    # what they are called) and how many were then in the room, and its id is the one the
    # change returned.
    history = await room_events(events, layout, channel)
    assert [(e["type"], e["data"], e["from"]) for e in history] == [
        ("join", {"count": 1, "user_id": "a", "name": "Ada"}, "a"),
        ("join", {"count": 2, "user_id": "b"}, "b"),
        ("leave", {"count": 0, "user_id": "a"}, "a"),
    ]
    assert (history[0]["id"], history[2]["id"]) == (first.event_id, change.event_id)


async def test_joins_count_users_across_replicas_and_dead_replicas_expire(redis: Redis) -> None:
    await _joins_and_deaths(redis, redis, PLAIN, f"room:presence-{os.urandom(4).hex()}")


async def test_on_a_cluster_a_rooms_presence_lives_in_its_slot(
    redis: Redis, cluster: RedisCluster
) -> None:
    channel = f"room:presence-{os.urandom(4).hex()}"
    await _joins_and_deaths(redis, cluster, CLUSTER, channel)
    one, _ = _pair(redis, cluster, CLUSTER)
    await one.join(channel, "c")
    # The room's hash is on the cluster, hash-tagged; the main Redis holds none of it.
    assert await cluster.hgetall(f"{PRESENCE_PREFIX}{{{channel}}}") == {
        f"{one.replica}|c".encode(): b"1"
    }
    assert not await redis.exists(PRESENCE_PREFIX + channel)


async def test_a_replica_of_the_previous_release_counts_while_its_key_lives(
    redis: Redis,
) -> None:
    channel = f"room:presence-{os.urandom(4).hex()}"
    new = Presence(redis, bus_of(redis), replica=f"new.{os.urandom(2).hex()}", ttl=30)
    old = f"old.{os.urandom(2).hex()}"
    # What a replica without per-channel liveness keys wrote: its field and its global key.
    await redis.hset(PRESENCE_PREFIX + channel, f"{old}|x", 1)
    await redis.set(REPLICA_PREFIX + old, "1", ex=30)
    assert (await new.join(channel, "y")).members == 2
    await redis.delete(REPLICA_PREFIX + old)
    assert await new.members(channel) == {"y": Present(1, None)}


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
