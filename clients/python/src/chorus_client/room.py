"""``RoomClient``: a chat room over WebSocket (``GET /ws/{room}``), resuming where it left.

The token is offered as a second subprotocol, ``bearer.<jwt>`` next to ``chorus.v1``
(browsers cannot set headers on a WebSocket, and a query string ends up in access logs);
``token_in="query"`` sends ``?token=`` instead. On every reconnect the client asks for
``?since=<last stream id>`` and the server replays what it missed, then goes live, with no
gap and no duplicate; its ``subscribed`` frame says whether everything was ``recovered``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal
from urllib.parse import quote

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from chorus_client.backoff import Backoff
from chorus_client.reconnecting import Close, Frame, FrameHandler, ReconnectingClient

__all__ = ["SUBPROTOCOL", "RoomClient", "TokenIn"]

#: The protocol the server speaks on ``/ws/{room}``.
SUBPROTOCOL: Final = "chorus.v1"
#: Where the token travels: a second subprotocol (preferred), or ``?token=``.
TokenIn = Literal["subprotocol", "query"]
_IN_SUBPROTOCOL: Final[TokenIn] = "subprotocol"
_IN_QUERY: Final[TokenIn] = "query"
#: Largest frame accepted from the server (a replay batch can be large).
MAX_FRAME_BYTES: Final = 2**22
OPEN_TIMEOUT: Final = 5.0


class RoomClient(ReconnectingClient):
    """A WebSocket client of ``/ws/{room}`` that resumes from its last stream id."""

    def __init__(
        self,
        base_urls: Sequence[str],
        room: str,
        token: str,
        *,
        since: str | None = None,
        token_in: TokenIn = _IN_SUBPROTOCOL,
        backoff: Backoff | None = None,
        reconnect: bool = True,
        on_frame: FrameHandler | None = None,
        max_frames: int | None = None,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        websocket_urls = [u.replace("http", "ws", 1) for u in base_urls]
        super().__init__(websocket_urls, backoff=backoff, on_frame=on_frame, max_frames=max_frames)
        self.room = room
        self.token = token
        self.last_id = since
        self.token_in = token_in
        self.reconnect = reconnect
        #: More arguments of ``websockets.connect``: ``ssl`` (a CA of your own), ``host`` and
        #: ``port`` (connect elsewhere, keeping the URL's name for Host and TLS), ``proxy``.
        self.connect_options = dict(connect_options or {})
        self._ws: ClientConnection | None = None

    def url(self) -> str:
        """The URL of the next connection (with ``since`` = the last id received)."""
        params = []
        if self.token_in == _IN_QUERY:
            params.append(f"token={quote(self.token)}")
        if self.last_id:
            params.append(f"since={quote(self.last_id)}")
        query = f"?{'&'.join(params)}" if params else ""
        return f"{self.current_url}/ws/{self.room}{query}"

    async def connect_once(self) -> Close | None:
        """One WebSocket connection, read until it ends."""
        url = self.url()
        protocols = [Subprotocol(SUBPROTOCOL)]
        if self.token_in == _IN_SUBPROTOCOL:
            protocols.append(Subprotocol(f"bearer.{self.token}"))
        try:
            async with connect(
                url,
                subprotocols=protocols,
                open_timeout=OPEN_TIMEOUT,
                max_size=MAX_FRAME_BYTES,
                ping_interval=None,  # the server pings; a pong is automatic
                **self.connect_options,
            ) as ws:
                self._ws = ws
                self.connection_made()
                async for raw in ws:
                    self.record(orjson.loads(raw))
                return Close(ws.close_code or 1000, ws.close_reason or "", url)
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                return Close(exc.rcvd.code, exc.rcvd.reason, url)
            return Close(1006, "connection dropped", url)
        except (OSError, InvalidStatus, TimeoutError) as exc:
            return Close(1006, f"{type(exc).__name__}: {exc}", url)
        finally:
            self._ws = None
            if not self.reconnect:
                self.stopped = True

    async def send_text(self, text: str) -> None:
        """Send one text frame as it is (waits for a connection; ConnectionError once stopped).

        :meth:`send` encodes a frame for you; this is for frames you encoded yourself.
        """
        if self.stopped and self._ws is None:
            msg = "the client has stopped"
            raise ConnectionError(msg)
        await self.connected.wait()
        ws = self._ws
        if ws is None:  # dropped between "connected" and now: the caller decides
            msg = "the connection dropped"
            raise ConnectionError(msg)
        await ws.send(text)

    async def send(self, frame: Frame) -> None:
        """Send a frame (a JSON object: ``{"type": "message", "message": ...}`` and others)."""
        await self.send_text(orjson.dumps(frame).decode())

    async def say(self, text: str, **extra: Any) -> None:
        """Send a chat message; ``ref=`` comes back in its ``ack``."""
        await self.send({"type": "message", "message": text, **extra})

    async def wait_subscribed(self, *, count: int = 1, timeout: float = 10.0) -> Frame:  # noqa: ASYNC109
        """The ``count``-th ``subscribed`` frame (one per (re)connection)."""
        await self.wait_for(lambda: len(self.of_type("subscribed")) >= count, timeout=timeout)
        return self.of_type("subscribed")[count - 1]

    def messages(self) -> list[str]:
        """Texts of the ``message`` events received, in order."""
        return [f["data"]["message"] for f in self.events if f["type"] == "message"]
