"""Pure-ASGI middleware: ``X-Request-ID``, ``X-Process-Time`` and the access log.

Written against raw ASGI rather than ``BaseHTTPMiddleware``, which buffers streaming
responses through a memory stream and hides client disconnects from the endpoint. Here
``receive`` is passed through untouched and ``send`` only decorates the response start.
An unexpected exception becomes the standard JSON 500, still carrying the request id.
"""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus_common.errors import error_response
from chorus_common.logs import request_id_var

__all__ = ["REQUEST_ID_HEADER", "RequestContextMiddleware"]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode()
# A client-supplied id ends up in every log line: accept only short, inert tokens.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")

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
        except Exception:
            access_logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
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
            request_id_var.reset(token)
