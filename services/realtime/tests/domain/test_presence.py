"""Presence across replicas, and a dead replica dropping out."""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis

from chorus_realtime.domain.presence import NAMES_PREFIX, REPLICA_PREFIX, Presence, Present


async def test_joins_count_users_across_replicas_and_dead_replicas_expire(redis: Redis) -> None:
    channel = f"room:presence-{os.urandom(4).hex()}"
    one = Presence(redis, replica=f"one.{os.urandom(2).hex()}", ttl=30)
    two = Presence(redis, replica=f"two.{os.urandom(2).hex()}", ttl=30)
    await one.heartbeat()
    await two.heartbeat()
    assert (await one.join(channel, "a", "Ada")).user_connections == 1
    change = await two.join(channel, "a", "Ada")
    assert (change.user_connections, change.members) == (2, 1)
    assert (await two.join(channel, "b")).members == 2
    assert await one.members(channel) == {"a": Present(2, "Ada"), "b": Present(1, None)}
    # Replica two dies without cleaning up: once its key is gone, its members are too.
    await redis.delete(REPLICA_PREFIX + two.replica)
    assert await one.members(channel) == {"a": Present(1, "Ada")}
    change = await one.leave(channel, "a")
    assert (change.user_connections, change.members) == (0, 0)
    # Nobody left: no name is kept for them.
    assert await redis.hgetall(NAMES_PREFIX + channel) == {}


async def test_connection_quota(redis: Redis) -> None:
    user = f"u{os.urandom(3).hex()}"
    one = Presence(redis, replica=f"one.{os.urandom(2).hex()}", ttl=30)
    await one.heartbeat()
    assert await one.acquire_connection(user, limit=2)
    assert await one.acquire_connection(user, limit=2)
    assert not await one.acquire_connection(user, limit=2)
    await one.release_connection(user)
    assert await one.acquire_connection(user, limit=2)
    await asyncio.gather(one.release_connection(user), one.release_connection(user))
