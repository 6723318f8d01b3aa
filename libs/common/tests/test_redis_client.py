"""The Redis client factories: pooled, bounded, patient; behind Sentinels, and a cluster."""

from __future__ import annotations

import asyncio
import os
import time

from arq.connections import ArqRedis
from prometheus_client import REGISTRY
from redis.exceptions import RedisError

from chorus_common.redis_client import RedisEndpoint, create_redis, redis_check
from chorus_common.settings import RedisSettings
from chorus_devstack.servers import RunningRedis, RunningSentinelGroup


async def test_more_concurrent_commands_than_connections_wait_for_one(
    redis_server: RunningRedis,
) -> None:
    client = create_redis(redis_server.url, client_name="t", max_connections=2, socket_timeout=None)
    try:
        # Five blocking reads on two connections: the pool queues them rather than
        # raising "Too many connections", and each completes once a connection frees up.
        results = await asyncio.gather(
            *(client.blpop([f"test:none:{i}"], timeout=0.05) for i in range(5))
        )
        assert results == [None] * 5
    finally:
        await client.aclose()


async def test_aclose_closes_the_pools_connections(redis_server: RunningRedis) -> None:
    # Seen from the server: the client's connections are open while it is, gone after aclose.
    name = f"aclose-{os.urandom(4).hex()}"
    observer = create_redis(redis_server.url, client_name="observer")

    async def connections() -> int:
        return sum(1 for c in await observer.client_list() if c["name"] == name)

    client = create_redis(redis_server.url, client_name=name, max_connections=4)
    try:
        await asyncio.gather(*(client.blpop([f"test:none:{i}"], timeout=0.05) for i in range(3)))
        assert await connections() == 3  # a pooled connection each, kept open for reuse
        await client.aclose()
        async with asyncio.timeout(10):
            while await connections():
                await asyncio.sleep(0.02)
    finally:
        await observer.aclose()


def test_an_endpoint_from_settings_describes_itself_without_secrets() -> None:
    plain = RedisEndpoint.from_settings(RedisSettings(redis_url="redis://:pw@cache:6379/2"))
    assert plain.describe() == "redis://cache:6379/2"
    behind = RedisEndpoint.from_settings(
        RedisSettings(
            redis_sentinels="a:26379,b:26379",
            redis_sentinel_master="chorus",
            redis_password="pw",  # type: ignore[arg-type]
        )
    )
    assert behind.uses_sentinel
    assert behind.describe() == "sentinel://a:26379,b:26379/chorus"
    assert "pw" not in repr(behind)


async def test_behind_sentinels_a_client_follows_the_primary_through_a_failover(
    redis_sentinel: RunningSentinelGroup,
) -> None:
    endpoint = RedisEndpoint.from_settings(
        RedisSettings(
            redis_sentinels=redis_sentinel.sentinels, redis_sentinel_master=redis_sentinel.master
        )
    )
    client = create_redis(endpoint, client_name="sentinel-test", retries=2)
    queue = create_redis(
        endpoint, client_name="sentinel-queue", pool_timeout=None, redis_class=ArqRedis
    )
    try:
        await client.set("chorus:test:before", "1")
        assert isinstance(queue, ArqRedis)
        assert await queue.get("chorus:test:before") == b"1"
        old = redis_sentinel.group.primary()
        killed = redis_sentinel.group.primary_name()
        redis_sentinel.kill(killed)
        started = time.monotonic()
        # Writes fail while no primary is named, then reach the promoted replica —
        # the same client, never rebuilt.
        while True:
            try:
                await client.set("chorus:test:after", "2")
                break
            except (RedisError, OSError):
                if time.monotonic() - started > 60:
                    raise
                await asyncio.sleep(0.1)
        assert redis_sentinel.group.primary() != old
        assert await client.get("chorus:test:before") == b"1"  # replicated before the kill
        assert await queue.get("chorus:test:after") == b"2"
        assert (await client.execute_command("ROLE"))[0] == b"master"
    finally:
        await client.aclose()
        await queue.aclose()
        redis_sentinel.start_again(killed)


async def test_the_readiness_check_reports_how_full_redis_is(redis_server: RunningRedis) -> None:
    client = create_redis(redis_server.url, client_name="t")
    try:
        await redis_check(client)()
    finally:
        await client.aclose()
    # The devstack's Redis is bounded like the chart's: maxmemory with noeviction.
    assert REGISTRY.get_sample_value("chorus_redis_memory_max_bytes") == 384 * 2**20
    used = REGISTRY.get_sample_value("chorus_redis_memory_used_bytes")
    assert used is not None
    assert 0 < used < 384 * 2**20


async def test_a_redis_that_refuses_info_is_pinged_instead(redis_server: RunningRedis) -> None:
    admin = create_redis(redis_server.url, client_name="t")
    user = f"noinfo{os.urandom(3).hex()}"
    await admin.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-info"]
    )
    limited = create_redis(
        redis_server.url.replace("redis://", f"redis://{user}:secret@"), client_name="t"
    )
    try:
        check = redis_check(limited)
        await check()  # refused INFO: it pings, and the process stays ready
        assert check.info_allowed is False
        await check()
    finally:
        await limited.aclose()
        await admin.acl_deluser(user)
        await admin.aclose()
