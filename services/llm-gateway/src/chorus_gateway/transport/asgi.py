"""The raw-ASGI plumbing of the completion routes: body, responses, disconnect watching.

The completion endpoints are plain ASGI callables, not FastAPI handlers: nothing buffers
a stream, every chunk is one ``send``, and the client's disconnect is seen the moment
uvicorn sees it (``receive`` returns ``http.disconnect``), which interrupts the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.types import Receive, Scope, Send

from chorus_gateway.domain.errors import GatewayError, body_too_large
from chorus_gateway.domain.interrupt import CLIENT_DISCONNECTED, Interruptible

__all__ = [
    "AsgiClientStream",
    "header",
    "read_body",
    "run_interruptible",
    "send_error",
    "send_json",
]

T = TypeVar("T")
Headers = list[tuple[bytes, bytes]]
_JSON = (b"content-type", b"application/json")


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (the first one), decoded as latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body; None if the client left; 413 beyond ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(send: Send, status: int, body: bytes, headers: Headers | None = None) -> None:
    """A complete JSON response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: GatewayError, body: bytes | None = None) -> None:
    """An error response (OpenAI's shape unless ``body`` is given)."""
    headers = [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send_json(send, error.status, body if body is not None else error.body(), headers)


class AsgiClientStream:
    """A :class:`~chorus_gateway.domain.relay.ClientStream` over ASGI ``send``."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    async def start(self, status: int, headers: Headers) -> None:
        """Status line and headers."""
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, data: bytes) -> None:
        """One body chunk, flushed now."""
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        """The last body chunk."""
        await self._send({"type": "http.response.body", "body": data, "more_body": False})


async def _watch(receive: Receive, call: Interruptible) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            call.interrupt(CLIENT_DISCONNECTED)
            return


async def run_interruptible(
    call: Interruptible, work: Coroutine[Any, Any, T], receive: Receive
) -> T:
    """Run ``work`` (``call``'s run) in its own task, interrupted if the client leaves."""
    task = asyncio.create_task(work)
    watcher = asyncio.create_task(_watch(receive, call))
    try:
        return await task
    finally:
        watcher.cancel()
