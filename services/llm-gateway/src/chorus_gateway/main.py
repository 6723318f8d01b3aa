"""The llm-gateway application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chorus_common.app import create_service_app
from chorus_common.redis_client import create_redis, redis_check
from chorus_gateway import __version__
from chorus_gateway.settings import GatewaySettings

__all__ = ["create_app"]


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the llm-gateway; the lifespan owns its Redis client."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings.redis_url, client_name="chorus-gateway")
        app.state.redis = redis
        app.state.health.add_check("redis", redis_check(redis))
        try:
            yield
        finally:
            await redis.aclose()

    return create_service_app(
        settings, title="Chorus LLM gateway", version=__version__, lifespan=lifespan
    )
