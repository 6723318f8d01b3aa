"""Pure-ASGI middleware: ``X-Request-ID``, ``X-Process-Time`` and the access log.

Written against raw ASGI rather than ``BaseHTTPMiddleware``, which buffers streaming
responses through a memory stream and hides client disconnects from the endpoint. Here
``receive`` is passed through untouched and ``send`` only decorates the response start.
An unexpected exception becomes the standard JSON 500, still carrying the request id.

With tracing on (``chorus_common.tracing``) every HTTP request is also a server span,
continuing the caller's trace when it sent a ``traceparent`` header, named
``<METHOD> <route template>`` once the route is known, with the HTTP semantic
conventions' attributes and ``chorus.request_id``. Being the outermost layer, and the one
the fast paths keep, it covers every route of every service. WebSocket connections live
for hours, so they are not spans themselves: what happens on them is (realtime). Probes
and scrapes (``/healthz``, ``/readyz``, ``/metrics``, every few seconds from Kubernetes
and Prometheus) are not traced.
"""

from __future__ import annotations

import logging
import os
import re
import time

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus_common.errors import error_response
from chorus_common.http_metrics import UNMATCHED, route_template
from chorus_common.logs import request_id_var
from chorus_common.trace_context import context_from_headers
from chorus_common.tracing import context_with, record_failure, tracer

__all__ = ["REQUEST_ID_HEADER", "RequestContextMiddleware"]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode()
# A client-supplied id ends up in every log line: accept only short, inert tokens.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
#: Paths never traced: probes and scrapes.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

access_logger = logging.getLogger("chorus.access")


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_BYTES and _SAFE_ID.fullmatch(value):
            return str(value.decode())
    return os.urandom(16).hex()


class RequestContextMiddleware:
    """Give every request an id and a timing, and log one access line when it ends."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                request_id_var.reset(token)
            return

        start = time.perf_counter()
        status = 0
        tracing = tracer()
        span: Span | None = None
        attached: object = None
        if tracing is not None and scope["path"] not in UNTRACED_PATHS:
            span = _server_span(tracing, scope, request_id)
            attached = otel_context.attach(context_with(span))

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = time.perf_counter() - start
                headers = list(message.get("headers", ()))
                headers.append((_REQUEST_ID_BYTES, request_id.encode()))
                headers.append((b"x-process-time", f"{elapsed:.6f}".encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            access_logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if span is not None:
                record_failure(span, exc)
            if status:  # headers already went out; all we can do is drop the connection
                raise
            response = error_response(
                500, "internal_error", f"Internal server error. Request id {request_id}."
            )
            await response(scope, receive, send_with_headers)
        finally:
            if self.access_log:
                access_logger.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    (time.perf_counter() - start) * 1000,
                )
            if span is not None:
                _end_server_span(span, scope, status)
                otel_context.detach(attached)  # type: ignore[arg-type]
            request_id_var.reset(token)


def _server_span(tracing: Tracer, scope: Scope, request_id: str) -> Span:
    """The request's server span, child of the caller's ``traceparent`` if it sent one."""
    attributes: dict[str, str | int] = {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "chorus.request_id": request_id,
    }
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    server = scope.get("server")
    if server and server[1] is not None:
        attributes["server.port"] = server[1]
    return tracing.start_span(
        scope["method"],
        context=context_from_headers(scope["headers"]),
        kind=SpanKind.SERVER,
        attributes=attributes,
    )


def _end_server_span(span: Span, scope: Scope, status: int) -> None:
    route = route_template(scope)
    if route != UNMATCHED:
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    if status:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(StatusCode.ERROR)
    span.end()
