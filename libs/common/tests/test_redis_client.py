"""The Redis client factory: pooled, bounded, patient when the pool is busy."""

from __future__ import annotations

import asyncio
import os

from prometheus_client import REGISTRY

from chorus_common.redis_client import create_redis, redis_check
from chorus_devstack.servers import RunningRedis


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


async def test_aclose_releases_the_pool(redis_server: RunningRedis) -> None:
    client = create_redis(redis_server.url, client_name="t")
    await client.ping()
    await client.aclose()
    assert client.connection_pool._in_use_connections == set()  # type: ignore[attr-defined]


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
