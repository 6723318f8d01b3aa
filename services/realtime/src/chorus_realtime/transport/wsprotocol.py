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

An open socket lives for hours, so what it holds is trimmed (measured with
``bench/realtime_memory.py``): the receive queue and the "writable" flag are small slotted
stand-ins for the ``asyncio.Queue`` and ``asyncio.Event`` uvicorn allocates (about 4 KiB of
deques, an inner Event and futures per socket), ``receive`` awaits a bare future instead of
a ``Queue.get`` coroutine, and the handshake's request and response headers are released
once the socket is accepted.

Also, uvicorn logs the path *with its query string* when it accepts a socket; a token
passed as ``?token=`` is redacted from those lines.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
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


class _Inbox:
    """The part of ``asyncio.Queue`` uvicorn's protocol uses, for ASGI receive events.

    uvicorn pauses reading after each message until the app receives it, so the inbox
    holds one or two events at most; idle, it is two empty slots.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[ASGIReceiveEvent] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        """Queue ``item`` and wake the receiver."""
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def empty(self) -> bool:
        """Nothing queued."""
        return not self._items

    def wait(self) -> asyncio.Future[None]:
        """A future that completes when an item is put (the caller checks again)."""
        if self._waiter is None or self._waiter.done():  # done: a cancelled receive
            self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    def pop(self) -> ASGIReceiveEvent:
        """The oldest item (the inbox must not be empty)."""
        assert self._items
        item = self._items.pop(0)
        if not self._items:
            self._items = None
        return item


class _Gate:
    """The part of ``asyncio.Event`` uvicorn's protocol uses for its "writable" flag."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        """The socket takes data."""
        return self._open

    def set(self) -> None:
        """Open, waking every waiter."""
        self._open = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        """Close (back-pressure)."""
        self._open = False

    async def wait(self) -> bool:
        """Until open."""
        while not self._open:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return True


class FrameTransport(Protocol):
    """What the app sees of the protocol (``scope["extensions"]["chorus.transport"]``)."""

    @property
    def open(self) -> bool:
        """The handshake is done and neither side started closing."""

    @property
    def can_write(self) -> bool:
        """Open, and the socket is taking data (not paused by back-pressure)."""

    def write_frames(self, data: bytes) -> None:
        """Write encoded text frames now (only right after :attr:`can_write` said True)."""

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
        # Duck-typed stand-ins for the asyncio.Queue and asyncio.Event (see the module doc).
        self.queue = _Inbox()  # type: ignore[assignment]
        self._gate = _Gate()
        self.writable = self._gate  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        """Expose the protocol to the app through the scope before the app starts."""
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][TRANSPORT_EXTENSION] = self

    async def receive(self) -> ASGIReceiveEvent:
        """The next ASGI event, awaiting a bare future while there is none."""
        inbox: _Inbox = self.queue  # type: ignore[assignment]
        while inbox.empty():
            await inbox.wait()
        message = inbox.pop()
        if self.read_paused and inbox.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: ASGISendEvent) -> None:
        """uvicorn's send; once the socket is accepted, the handshake objects are released."""
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The request stays referenced by websockets' parser (a generator local) and
            # the response by this protocol; their headers are all that weighs.
            self.request.headers.clear()
            self.response.headers.clear()

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
            and self.conn.state is State.OPEN
        )

    @property
    def can_write(self) -> bool:
        """Open, and the socket is taking data (not paused by back-pressure)."""
        # ``open`` spelled out: this is asked once per socket per flush.
        return (
            self._gate._open
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.conn.state is State.OPEN
        )

    def write_frames(self, data: bytes) -> None:
        """Write encoded text frames now (only right after :attr:`can_write` said True)."""
        self.transport.write(data)

    async def wait_writable(self) -> None:
        """Until the socket takes data again (or the connection is lost)."""
        await self.writable.wait()
