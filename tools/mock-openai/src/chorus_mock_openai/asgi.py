"""The slice of ASGI this server speaks: type aliases, body reading and whole responses.

The mock is a bare ASGI callable rather than a framework app because it is the
baseline that proxies are benchmarked against: every microsecond it spends is
charged to the system under test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "Headers",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "read_body",
    "send_json",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_JSON = (b"content-type", b"application/json")


async def read_body(receive: Receive) -> bytes | None:
    """Read the whole request body; return None if the client went away first."""
    first = await receive()
    if first["type"] == "http.disconnect":
        return None
    body: bytes = first.get("body", b"")
    if not first.get("more_body", False):
        return body
    parts = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_json(send: Send, status: int, body: bytes, headers: Headers | None = None) -> None:
    """Send a complete JSON response with a content-length."""
    response_headers: Headers = [_JSON, (b"content-length", b"%d" % len(body))]
    if headers:
        response_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
