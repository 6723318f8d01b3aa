"""The Redis client factory: one pooled ``redis.asyncio`` client per process.

Connection errors are retried with capped exponential backoff so a Redis failover or
restart costs a request a few hundred milliseconds rather than an error; idle
connections are health-checked before reuse so a restarted server is noticed at once.

The readiness check also reports how full Redis is: it asks ``INFO memory`` instead of
``PING`` and exports ``chorus_redis_memory_used_bytes`` and ``chorus_redis_memory_max_bytes``
(``maxmemory``, 0 when unlimited), so the alerts on Redis memory need no exporter of
their own. A Redis that refuses ``INFO`` (an ACL) is pinged instead, and the gauges stay
where they were.
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["REDIS_MEMORY_MAX", "REDIS_MEMORY_USED", "create_redis", "redis_check"]

logger = logging.getLogger("chorus.redis")

REDIS_MEMORY_USED = Gauge(
    "chorus_redis_memory_used_bytes",
    "Redis used_memory (INFO memory) at this process's last readiness check.",
)
REDIS_MEMORY_MAX = Gauge(
    "chorus_redis_memory_max_bytes",
    "Redis maxmemory (0: no limit) at this process's last readiness check.",
)


def create_redis(
    url: str,
    *,
    client_name: str,
    max_connections: int = 64,
    socket_timeout: float | None = 5.0,
    retries: int = 3,
    pool_timeout: float = 5.0,
) -> Redis:
    """A client for ``url`` that retries transient connection failures.

    ``socket_timeout`` bounds every command; pass ``None`` for a client that issues
    blocking reads (``XREAD BLOCK``, pub/sub ``listen``) longer than that. When all
    ``max_connections`` are busy, a command waits up to ``pool_timeout`` seconds for one
    (a blocking pool) instead of failing at once with "Too many connections".
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        client_name=client_name,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        decode_responses=False,
    )
    # from_pool: the client owns the pool, so aclose() closes its connections too.
    client: Redis = Redis.from_pool(pool)
    return client


def redis_check(client: Redis) -> RedisCheck:
    """A readiness check that asks ``client`` for its memory (for :meth:`Health.add_check`)."""
    return RedisCheck(client)


class RedisCheck:
    """Callable readiness check; a class so the bound client is visible in a debugger."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.info_allowed = True

    async def __call__(self) -> None:
        """Raise unless Redis answers; note its memory use on the way."""
        if self.info_allowed:
            try:
                memory = await self.client.info("memory")
            except ResponseError as exc:
                logger.warning("Redis refuses INFO (%s): readiness pings it instead", exc)
                self.info_allowed = False
            else:
                REDIS_MEMORY_USED.set(float(memory.get("used_memory", 0)))
                REDIS_MEMORY_MAX.set(float(memory.get("maxmemory", 0)))
                return
        await self.client.ping()
