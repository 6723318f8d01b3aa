"""The realtime application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chorus_common.app import create_service_app
from chorus_common.redis_client import create_redis, redis_check
from chorus_realtime import __version__
from chorus_realtime.settings import RealtimeSettings

__all__ = ["create_app"]


def create_app(settings: RealtimeSettings) -> FastAPI:
    """Build the realtime service; the lifespan owns its Redis client."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings.redis_url, client_name="chorus-realtime")
        app.state.redis = redis
        app.state.health.add_check("redis", redis_check(redis))
        try:
            yield
        finally:
            await redis.aclose()

    return create_service_app(
        settings, title="Chorus realtime", version=__version__, lifespan=lifespan
    )
