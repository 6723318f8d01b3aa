"""The WebSocket server protocol: uvicorn's sans-I/O ``websockets`` implementation, plus two things.

- ``scope["extensions"]["chorus.transport"]["abort"]``: drop the TCP connection at once.
  ASGI can only *close* a WebSocket, and a close frame waits behind everything already
  buffered for a client that stopped reading — it would never leave. A slow consumer is
  aborted instead, so it stops holding memory and can never stall its writer.
- Text frames are written straight to the transport when nothing else is pending on the
  connection (the common case): one header plus the payload, without building a
  ``Frame`` object per delivery. Fragmented or compressed connections take uvicorn's path.

Also, uvicorn logs the path *with its query string* when it accepts a socket; a token
passed as ``?token=`` is redacted from those lines.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["TRANSPORT_EXTENSION", "RealtimeWebSocketProtocol"]

TRANSPORT_EXTENSION = "chorus.transport"
_TOKEN = re.compile(r"(token=)[^&\s\"]+")


class _RedactTokens(logging.Filter):
    """Replace ``token=<jwt>`` in uvicorn's WebSocket log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args
            )
        return True


logging.getLogger("uvicorn.error").addFilter(_RedactTokens())


def _text_header(length: int) -> bytes:
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


class RealtimeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with an abort hook and a lean text path."""

    def handle_connect(self, event: Any) -> None:
        """Expose ``abort`` to the app through the scope before the app starts."""
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][TRANSPORT_EXTENSION] = {"abort": self.abort}

    def abort(self) -> None:
        """Drop the connection without a closing handshake."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _plainly_open(self) -> bool:
        return (
            self.handshake_complete
            and not self.close_sent
            and self.initial_response is None
            and not self.conn.extensions
            and self.conn.state is State.OPEN
        )

    async def send(self, message: ASGISendEvent) -> None:
        """Write text frames directly when the connection is plainly open."""
        if message["type"] == "websocket.send" and self._plainly_open():
            text = message.get("text")
            if text is not None:
                if not self.writable.is_set():
                    await self.writable.wait()
                if self.disconnected:
                    raise ClientDisconnected
                if not self._plainly_open():  # closed while we waited
                    await super().send(message)
                    return
                data = text.encode()
                self.transport.write(_text_header(len(data)) + data)
                return
        await super().send(message)
