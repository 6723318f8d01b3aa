"""Pure-ASGI request body cap: 413 ``payload_too_large`` beyond ``MAX_BODY_BYTES``.

A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked
body is counted as it streams and refused as soon as it crosses the limit, so no request
can make the api buffer more than the limit. The overflow is raised as an
``HTTPException`` (FastAPI lets those through its body parsing), so the standard JSON
error handler answers it, with the request id like any other error.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus_common.errors import error_response

__all__ = ["BodyLimitMiddleware", "BodyTooLargeError"]


class BodyTooLargeError(HTTPException):
    """The request body is over the limit."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            {
                "code": "payload_too_large",
                "message": f"The request body exceeds {max_bytes} bytes.",
            },
        )


class BodyLimitMiddleware:
    """Refuse HTTP request bodies larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
                has_body = True
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:
            # HTTP/1.1 frames a request body only by one of those two headers (uvicorn's
            # parsers read nothing else as body): most requests (GETs) pass straight on.
            await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if started:  # pragma: no cover - the app answered before reading its body
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large", f"The request body exceeds {self.max_bytes} bytes."
        )
        await response(scope, receive, send)
