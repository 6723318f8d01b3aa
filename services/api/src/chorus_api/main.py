"""The api application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chorus_api import __version__
from chorus_api.settings import ApiSettings
from chorus_common.app import create_service_app
from chorus_common.database import DatabaseCheck, create_engine, create_sessionmaker
from chorus_common.redis_client import create_redis, redis_check

__all__ = ["create_app"]


def create_app(settings: ApiSettings) -> FastAPI:
    """Build the api; the lifespan owns the database engine and the Redis client."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        redis = create_redis(
            settings.redis_url,
            client_name="chorus-api",
            max_connections=settings.redis_max_connections,
        )
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.redis = redis
        app.state.health.add_check("postgres", DatabaseCheck(engine))
        app.state.health.add_check("redis", redis_check(redis))
        try:
            yield
        finally:
            await redis.aclose()
            await engine.dispose()

    return create_service_app(
        settings,
        title="Chorus API",
        version=__version__,
        description="Users, auth, orders, dashboard and room history.",
        lifespan=lifespan,
        docs_prefix="/api",
    )
