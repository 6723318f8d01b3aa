"""The Redis client factory: one pooled ``redis.asyncio`` client per process.

Connection errors are retried with capped exponential backoff so a Redis failover or
restart costs a request a few hundred milliseconds rather than an error; idle
connections are health-checked before reuse so a restarted server is noticed at once.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["create_redis", "redis_check"]


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
    """A readiness check that pings ``client`` (for :meth:`Health.add_check`)."""
    return RedisCheck(client)


class RedisCheck:
    """Callable readiness check; a class so the bound client is visible in a debugger."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    async def __call__(self) -> None:
        """Raise unless Redis answers PING."""
        await self.client.ping()
