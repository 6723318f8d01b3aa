"""The WebSocket server protocol: uvicorn's sans-I/O ``websockets`` implementation, plus a door.

``scope["extensions"]["chorus.transport"]`` is the protocol itself, seen by the app as a
:class:`FrameTransport`:

- ``write_frames``: ready-made text frames go straight to the socket, synchronously — the
  same bytes for every subscriber of an event, built once (``OutFrame.websocket``) — so a
  delivery needs neither a task switch nor a ``Frame`` object per socket;
- ``can_write`` / ``wait_writable``: the transport's back-pressure, so a writer stops when
  a client stops reading and its own queue (not the event loop) absorbs the backlog;
- ``abort``: drop the TCP connection at once. ASGI can only *close* a WebSocket, and a
  close frame waits behind everything already buffered for a client that stopped reading
  — it would never leave. A slow consumer is aborted instead.

Frames written directly are plain text frames, so per-message compression must be off
(it is: ``server_options``); the protocol refuses to start otherwise.

Also, uvicorn logs the path *with its query string* when it accepts a socket; a token
passed as ``?token=`` is redacted from those lines.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.protocol import State

__all__ = ["TRANSPORT_EXTENSION", "FrameTransport", "RealtimeWebSocketProtocol"]

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


class FrameTransport(Protocol):
    """What the app sees of the protocol (``scope["extensions"]["chorus.transport"]``)."""

    @property
    def open(self) -> bool:
        """The handshake is done and neither side started closing."""

    @property
    def can_write(self) -> bool:
        """Open, and the socket is taking data (not paused by back-pressure)."""

    def write_frames(self, data: bytes) -> bool:
        """Write encoded text frames now; False (nothing written) once closing or closed."""

    async def wait_writable(self) -> None:
        """Until the socket takes data again (or the connection is lost)."""

    def abort(self) -> None:
        """Drop the connection without a closing handshake."""


class RealtimeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol that the app can write frames to directly."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if config.ws_per_message_deflate:
            msg = "frames are written uncompressed: set ws_per_message_deflate=False"
            raise ValueError(msg)
        super().__init__(config, server_state, app_state, _loop)

    def handle_connect(self, event: Any) -> None:
        """Expose the protocol to the app through the scope before the app starts."""
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][TRANSPORT_EXTENSION] = self

    def abort(self) -> None:
        """Drop the connection without a closing handshake."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    @property
    def open(self) -> bool:
        """The handshake is done and neither side started closing."""
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.conn.state is State.OPEN
        )

    @property
    def can_write(self) -> bool:
        """Open, and the socket is taking data (not paused by back-pressure)."""
        return self.writable.is_set() and self.open

    def write_frames(self, data: bytes) -> bool:
        """Write encoded text frames now; False (nothing written) once closing or closed."""
        if not self.open:
            return False
        self.transport.write(data)
        return True

    async def wait_writable(self) -> None:
        """Until the socket takes data again (or the connection is lost)."""
        await self.writable.wait()
