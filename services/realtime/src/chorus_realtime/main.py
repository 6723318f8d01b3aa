"""The realtime application factory: the lifespan owns Redis, the hub and everything else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from fastapi import FastAPI

from chorus_common.app import create_service_app
from chorus_common.events import EventBus
from chorus_common.queue import JOB_CODEC
from chorus_common.redis_client import create_redis, redis_check
from chorus_common.tokens import TokenService
from chorus_realtime import __version__
from chorus_realtime.domain.assistant import Assistant
from chorus_realtime.domain.canary import Canary
from chorus_realtime.domain.hub import Hub
from chorus_realtime.domain.presence import Presence
from chorus_realtime.domain.quotas import Quotas, QuotaSettings
from chorus_realtime.domain.realtime import Realtime, replica_name
from chorus_realtime.domain.registry import Registry
from chorus_realtime.routes import presence, sse, ws
from chorus_realtime.settings import RealtimeSettings
from chorus_realtime.wsprotocol import RealtimeWebSocketProtocol

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
        replica = replica_name(settings.instance_id)
        redis = create_redis(
            settings.redis_url,
            client_name=f"chorus-realtime:{replica}",
            max_connections=settings.redis_max_connections,
        )
        bus = EventBus(redis, history_size=settings.history_size, history_ttl=settings.history_ttl)
        hub = Hub(
            redis_url=settings.redis_url,
            bus=bus,
            client_name=f"chorus-realtime-pubsub:{replica}",
            replay_limit=settings.replay_max,
        )
        realtime = Realtime(
            redis=redis,
            bus=bus,
            hub=hub,
            presence=Presence(redis, replica=replica, ttl=settings.presence_ttl),
            canary=Canary(
                hub=hub,
                bus=bus,
                instance=replica,
                interval=settings.canary_interval,
                timeout=settings.canary_timeout,
            ),
            registry=Registry(),
            tokens=TokenService(
                secret=settings.jwt_secret.get_secret_value(),
                issuer=settings.jwt_issuer,
                ttl=timedelta(hours=1),
            ),
            assistant=Assistant(
                ArqRedis(
                    redis.connection_pool,
                    default_queue_name=settings.arq_queue_name,
                    **JOB_CODEC,
                ),
                mention=settings.assistant_mention,
                queue_name=settings.arq_queue_name,
                max_pending=settings.assistant_max_pending_per_user,
            ),
            quotas=Quotas(
                redis,
                QuotaSettings(
                    bytes_per_second=settings.user_bytes_per_second,
                    bytes_burst=settings.user_bytes_burst,
                    new_rooms_per_minute=settings.user_new_rooms_per_minute,
                ),
            ),
        )
        app.state.redis = redis
        app.state.realtime = realtime
        app.state.health.add_check("redis", redis_check(redis))
        app.state.health.add_check("pubsub", realtime.ready)
        app.state.lifecycle.add_drain_hook("connections", realtime.registry.drain)
        await realtime.start()
        try:
            yield
        finally:
            await realtime.stop()
            await redis.aclose()

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
