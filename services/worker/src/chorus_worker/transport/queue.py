"""The Redis client arq's queue lives in, configured like every Chorus Redis client."""

from __future__ import annotations

from arq.connections import ArqRedis

from chorus_common.queue import JOB_CODEC
from chorus_common.redis_client import RedisEndpoint, create_redis
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["create_queue_redis"]


def create_queue_redis(settings: WorkerServiceSettings) -> ArqRedis:
    """arq's Redis client (enqueue, the job loop), retrying transient connection errors.

    The worker's jobs use it too (markers, locks; events too, unless the channels live on
    a cluster): one pool per process. Behind Sentinels it follows the primary like every
    Chorus client (``chorus_common.redis_client``).

    Unlike ``chorus_common.redis_client`` it sets no per-command socket timeout: redis-py
    arms an ``asyncio.timeout`` for every reply, which cost a quarter of the worker's
    no-op throughput (arq spends ~6 round trips per job). Hangs are bounded elsewhere: the
    job loop times out each turn (``worker.py``), every job runs under its timeout, and
    ``/readyz`` checks Redis with a client of its own. Nor does it wait for a free
    connection (a plain pool): the job loop never holds more than ``MAX_JOBS`` plus a few.
    """
    redis = create_redis(
        RedisEndpoint.from_settings(settings),
        client_name="chorus-worker",
        max_connections=settings.redis_max_connections,
        socket_timeout=None,
        pool_timeout=None,
        redis_class=ArqRedis,
    )
    redis.default_queue_name = settings.arq_queue_name
    # from_url hands keyword arguments to the connection pool, not to ArqRedis itself.
    redis.job_serializer = JOB_CODEC["job_serializer"]
    redis.job_deserializer = JOB_CODEC["job_deserializer"]
    return redis
