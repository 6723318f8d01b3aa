"""The Redis client factory: pooled, bounded, patient when the pool is busy."""

from __future__ import annotations

import asyncio

from chorus_common.redis_client import create_redis
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
