"""The completion routes' short way in, past FastAPI's and Starlette's layers.

Every request to a FastAPI app crosses about ten ASGI layers before its route (server
errors, telemetry, body limit, our two middlewares, exception handlers, exit stack,
router matching), each wrapping ``send`` again; the profile of a streamed completion
showed them as a visible share of the gateway's time to first token, for nothing the raw
ASGI completion routes use. :class:`FastPath` sits in front of the app's middleware
stack and sends ``POST`` to those paths straight to the route, wrapped in just the Chorus
middlewares every service has: request id and ``X-Process-Time`` (with the JSON 500),
and the HTTP metrics under the route's template. Responses, logs and metrics stay what
they were. Anything else (other paths, other methods with their 405 in OpenAI's shape,
the lifespan) goes through the full stack.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette._utils import get_route_path
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from chorus_common.http_metrics import HttpMetricsMiddleware
from chorus_common.request_context import RequestContextMiddleware

__all__ = ["FastPath"]


class FastPath:
    """Dispatches ``POST`` to ``routes`` directly, everything else to ``app``."""

    def __init__(self, app: ASGIApp, routes: Iterable[Route], *, access_log: bool) -> None:
        self.app = app
        self._routes: dict[str, tuple[Route, ASGIApp]] = {
            route.path: (
                route,
                RequestContextMiddleware(HttpMetricsMiddleware(route.app), access_log=access_log),
            )
            for route in routes
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = self._routes.get(get_route_path(scope))
            if found is not None:
                route, endpoint = found
                scope["route"] = route  # the metrics' route label, as the router sets it
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)
