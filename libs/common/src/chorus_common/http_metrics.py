"""Pure-ASGI Prometheus middleware: requests, latency and in-flight HTTP requests.

Labels stay bounded: the route *template* (``/api/orders/{order_id}``), never the raw path;
unmatched paths share one label; unknown methods collapse to ``OTHER``. Latency is measured
until the response body has been sent, so a long stream is recorded as long. With tracing
on, a latency observation of a sampled request carries its trace id as an exemplar.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus_common.tracing import exemplar

__all__ = ["HTTP_IN_FLIGHT", "HTTP_LATENCY", "HTTP_REQUESTS", "HttpMetricsMiddleware"]

HTTP_REQUESTS = Counter(
    "chorus_http_requests_total",
    "HTTP requests served, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "chorus_http_request_duration_seconds",
    "Time from request received to response fully sent, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
HTTP_IN_FLIGHT = Gauge(
    "chorus_http_requests_in_flight",
    "HTTP requests being served right now.",
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"
#: Status recorded when the client went away before a response was started (nginx's code).
CLIENT_CLOSED = 499


def route_template(scope: Scope) -> str:
    """The matched route's path template, or ``<unmatched>`` (FastAPI sets ``scope['route']``)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class HttpMetricsMiddleware:
    """Count and time every HTTP request without touching its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status = 0
        start = time.perf_counter()

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_recording_status)
        except BaseException:
            status = status or 500
            raise
        finally:
            HTTP_IN_FLIGHT.dec()
            route = route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status or CLIENT_CLOSED)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - start, exemplar())
