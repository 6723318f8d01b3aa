"""The realtime application factory; the lifespan opens the replica's parts (``resources``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from chorus_common.app import create_service_app
from chorus_common.redis_client import redis_check
from chorus_realtime import __version__
from chorus_realtime.resources import open_resources
from chorus_realtime.routes import presence, sse, ws
from chorus_realtime.settings import RealtimeSettings
from chorus_realtime.transport.wsprotocol import RealtimeWebSocketProtocol

__all__ = ["create_app", "server_options"]


def server_options(settings: RealtimeSettings) -> dict[str, Any]:
    """uvicorn options for this service (WebSocket implementation and limits)."""
    return {
        "ws": RealtimeWebSocketProtocol,
        "ws_max_size": settings.max_message_bytes,
        "ws_ping_interval": settings.ws_ping_interval or None,
        "ws_ping_timeout": settings.ws_ping_timeout,
        # Compression would cost a zlib context per socket (tens of KiB) and a
        # compression per delivery: the opposite of serialising each event once.
        "ws_per_message_deflate": False,
    }


def create_app(settings: RealtimeSettings) -> FastAPI:
    """Build the realtime service."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            app.state.health.add_check("redis", redis_check(resources.redis))
            app.state.health.add_check("pubsub", resources.ready)
            app.state.lifecycle.add_drain_hook("connections", resources.registry.drain)
            yield

    app = create_service_app(
        settings,
        title="Chorus realtime",
        version=__version__,
        description="WebSocket rooms and SSE streams, fanned out across replicas via Redis.",
        lifespan=lifespan,
        routers=[sse.router, presence.router],
    )
    # Outermost: room sockets skip the HTTP stack (see routes/ws.py for why).
    app.add_middleware(ws.RoomSockets)
    return app
