"""The worker's HTTP side: ``/healthz``, ``/readyz`` and ``/metrics`` on a small port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chorus_common.app import create_service_app
from chorus_common.database import DatabaseCheck, create_engine
from chorus_common.redis_client import create_redis, redis_check
from chorus_worker import __version__
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["create_app"]


def create_app(settings: WorkerServiceSettings) -> FastAPI:
    """The health and metrics app served next to the arq loop."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings.redis_url, client_name="chorus-worker-health")
        engine = create_engine(settings)
        app.state.health.add_check("redis", redis_check(redis))
        app.state.health.add_check("postgres", DatabaseCheck(engine))
        try:
            yield
        finally:
            await redis.aclose()
            await engine.dispose()

    return create_service_app(
        settings, title="Chorus worker", version=__version__, lifespan=lifespan
    )
