"""The app factory helper: what every Chorus HTTP service has, wired the same way.

``create_service_app`` builds a FastAPI app with logging configured (and a warning for
each setting given by a deprecated name), tracing set up from the ``OTEL_*`` variables
(nothing at all when no endpoint is set; spans flushed when the app stops), the lifecycle and
health registry on ``app.state``, ``/healthz`` ``/readyz`` ``/metrics``, the JSON error
handlers and the pure-ASGI middleware. A service passes its own lifespan (which creates
pools and clients and registers readiness checks) and its routers, so each service's
``create_app(settings)`` stays a few lines long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from chorus_common.errors import install_error_handlers
from chorus_common.health import Health, health_router
from chorus_common.http_metrics import HttpMetricsMiddleware
from chorus_common.lifecycle import Lifecycle
from chorus_common.logs import configure_logging
from chorus_common.request_context import RequestContextMiddleware
from chorus_common.settings import ServiceSettings
from chorus_common.tracing import configure_tracing, shutdown_tracing

__all__ = ["ServiceLifespan", "create_service_app"]

logger = logging.getLogger("chorus.app")

#: A service's own lifespan: open clients on enter (on ``app.state``), close them on exit.
ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    version: str,
    description: str = "",
    lifespan: ServiceLifespan | None = None,
    routers: Sequence[APIRouter] = (),
    docs_prefix: str | None = None,
    openapi_tags: list[dict[str, Any]] | None = None,
) -> FastAPI:
    """A FastAPI app with the Chorus plumbing installed.

    ``docs_prefix="/api"`` serves ``/api/openapi.json``; None publishes no schema. FastAPI's
    own docs pages are never served: they load their scripts from a public CDN into a
    page of our origin. A service that wants an interactive page serves one from its own
    files (the api does, see ``chorus_api.routes.apidocs``).
    """
    configure_logging(
        service=settings.service_name,
        level=settings.log_level,
        fmt=settings.effective_log_format,
    )
    for warning in settings.deprecations():
        logger.warning(warning)
    configure_tracing(settings, service=settings.service_name, version=version)

    @asynccontextmanager
    async def chorus_lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("starting %s", settings.service_name, extra={"env": settings.env.value})
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            # In a thread: the exporter's last POST must not stall the event loop.
            await asyncio.to_thread(shutdown_tracing)
        logger.info("stopped %s", settings.service_name)

    app = FastAPI(
        title=title,
        version=version,
        description=description,
        lifespan=chorus_lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{docs_prefix}/openapi.json" if docs_prefix is not None else None,
        openapi_tags=openapi_tags,
        # FastAPI's own OpenTelemetry would make a second server span per request (and
        # one per WebSocket, for hours): ours (request_context) is the one, on every path.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    lifecycle = Lifecycle()
    app.state.settings = settings
    app.state.lifecycle = lifecycle
    app.state.health = Health(lifecycle, timeout=settings.ready_check_timeout)
    install_error_handlers(app)
    app.include_router(health_router())
    for router in routers:
        app.include_router(router)
    # Added last = outermost: the request id exists before metrics and errors see it.
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(RequestContextMiddleware, access_log=settings.access_log)
    return app
