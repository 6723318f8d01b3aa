"""The Redis client arq's queue lives in, configured like every Chorus Redis client."""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chorus_common.queue import JOB_CODEC
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["create_queue_redis"]


def create_queue_redis(settings: WorkerServiceSettings) -> ArqRedis:
    """arq's Redis client (enqueue, the job loop), retrying transient connection errors.

    The worker's jobs use it too (events, markers, locks): one pool per process.

    Unlike ``chorus_common.redis_client`` it sets no per-command socket timeout: redis-py
    arms an ``asyncio.timeout`` for every reply, which cost a quarter of the worker's
    no-op throughput (arq spends ~6 round trips per job). Hangs are bounded elsewhere: the
    job loop times out each turn (``worker.py``), every job runs under its timeout, and
    ``/readyz`` checks Redis with a client of its own.
    """
    redis: ArqRedis = ArqRedis.from_url(
        settings.redis_url,
        client_name="chorus-worker",
        max_connections=settings.redis_max_connections,
        socket_timeout=None,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        decode_responses=False,
    )
    redis.default_queue_name = settings.arq_queue_name
    # from_url hands keyword arguments to the connection pool, not to ArqRedis itself.
    redis.job_serializer = JOB_CODEC["job_serializer"]
    redis.job_deserializer = JOB_CODEC["job_deserializer"]
    return redis
