"""The worker's HTTP side: ``/healthz``, ``/readyz`` and ``/metrics`` on a small port.

``/readyz`` answers 200 only while Redis and Postgres answer *and* the job loop turns
(its heartbeat is younger than ``HEARTBEAT_TIMEOUT``) — not arq's hourly health key, which
says nothing about the last hour. It answers 503 from the moment a drain begins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chorus_common.app import create_service_app
from chorus_common.database import DatabaseCheck, create_engine
from chorus_common.redis_client import create_redis, redis_check
from chorus_worker import __version__
from chorus_worker.settings import WorkerServiceSettings
from chorus_worker.transport.worker import ChorusWorker

__all__ = ["create_app"]


def create_app(settings: WorkerServiceSettings, *, worker: ChorusWorker | None = None) -> FastAPI:
    """The health and metrics app served next to the job loop of ``worker``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Clients of their own: readiness must test the way there, not a busy pool.
        redis = create_redis(
            settings.redis_url, client_name="chorus-worker-health", max_connections=4
        )
        engine = create_engine(settings.model_copy(update={"db_pool_size": 1}))
        app.state.health.add_check("redis", redis_check(redis))
        app.state.health.add_check("postgres", DatabaseCheck(engine))
        if worker is not None:
            app.state.health.add_check("job_loop", worker.check_loop)
        try:
            yield
        finally:
            await redis.aclose()
            await engine.dispose()

    return create_service_app(
        settings, title="Chorus worker", version=__version__, lifespan=lifespan
    )
