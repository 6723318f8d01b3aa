"""Clients of the realtime service that behave like good production clients.

:class:`RoomClient` (WebSocket ``/ws/{room}``) and :class:`EventStreamClient` (SSE
``/events``) keep a connection open in the background, remember the stream id of the
last event they received, and on any disconnect reconnect — to the next of their base
URLs, as a load balancer would send them elsewhere — after a jittered exponential backoff,
resuming from that id. Every frame they receive is recorded (``frames``, ``events``) so a
test or a benchmark can check order, gaps and duplicates itself.

Used by the realtime service tests, the end-to-end suite and ``bench/realtime_*.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Self
from urllib.parse import quote

import httpx
import orjson
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

__all__ = [
    "SUBPROTOCOL",
    "Backoff",
    "Close",
    "EventStreamClient",
    "RoomClient",
]

SUBPROTOCOL: Final = "chorus.v1"
#: Close codes after which reconnecting cannot help (auth, policy, size).
FINAL_CLOSE_CODES: Final = frozenset({1008, 1009})

Frame = dict[str, Any]


@dataclass
class Backoff:
    """Full-jitter exponential backoff: ``random(0, min(cap, base * 2**attempt))``."""

    base: float = 0.05
    cap: float = 2.0
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """A connection succeeded: start again from the base delay."""
        self.attempt = 0


@dataclass(frozen=True)
class Close:
    """How a connection ended: the close code and reason (1006 when it just dropped)."""

    code: int
    reason: str
    url: str


@dataclass
class _Recorder:
    """Frames received, with a condition to wait on."""

    frames: list[Frame] = field(default_factory=list)
    closes: list[Close] = field(default_factory=list)
    last_id: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, frame: Frame) -> None:
        self.frames.append(frame)
        stream_id = frame.get("id")
        if isinstance(stream_id, str) and "channel" in frame and "type" in frame:
            self.last_id = stream_id
        elif frame.get("type") == "subscribed" and frame.get("position") and not self.last_id:
            # Nothing received yet: resume from where the channel stood when we joined.
            self.last_id = frame["position"]
        elif frame.get("type") == "reconnect":
            positions = frame.get("positions") or {}
            if positions:
                self.last_id = next(iter(positions.values()))
        self.changed.set()

    @property
    def events(self) -> list[Frame]:
        """Durable events (envelopes with a stream id), in arrival order."""
        return [f for f in self.frames if isinstance(f.get("id"), str) and "channel" in f]

    def of_type(self, kind: str) -> list[Frame]:
        """Frames of one ``type``."""
        return [f for f in self.frames if f.get("type") == kind]

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Return once ``predicate()`` holds; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class _Reconnecting(_Recorder):
    """The reconnect loop shared by both clients."""

    def __init__(self, base_urls: Sequence[str], *, backoff: Backoff | None) -> None:
        super().__init__()
        if not base_urls:
            msg = "at least one base URL"
            raise ValueError(msg)
        self.base_urls = list(base_urls)
        self.backoff = backoff or Backoff()
        self.connects = 0
        self.connected = asyncio.Event()
        self.stopped = False
        self._url_index = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def current_url(self) -> str:
        """The base URL in use (or to be tried next)."""
        return self.base_urls[self._url_index % len(self.base_urls)]

    def _rotate(self) -> None:
        self._url_index += 1

    async def _session(self) -> Close | None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            close = await self._session()
            self.connected.clear()
            if close is not None:
                self.closes.append(close)
                self.changed.set()
                if close.code in FINAL_CLOSE_CODES:
                    self.stopped = True
            if self.stopped:
                return
            self._rotate()
            await asyncio.sleep(self.backoff.next_delay())

    async def start(self) -> Self:
        """Connect in the background; returns once the first connection is up."""
        self._task = asyncio.create_task(self._run())
        waiter = asyncio.create_task(self.connected.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiter.cancel()
            self._task.result()
        return self

    async def stop(self) -> None:
        """Stop reconnecting and close."""
        self.stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class RoomClient(_Reconnecting):
    """A WebSocket client of ``/ws/{room}`` that resumes from its last stream id."""

    def __init__(
        self,
        base_urls: Sequence[str],
        room: str,
        token: str,
        *,
        since: str | None = None,
        token_in: str = "subprotocol",
        backoff: Backoff | None = None,
        reconnect: bool = True,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__([u.replace("http", "ws", 1) for u in base_urls], backoff=backoff)
        self.room = room
        self.token = token
        self.last_id = since
        self.token_in = token_in
        self.reconnect = reconnect
        #: More arguments of ``websockets.connect`` (``host``/``port``/``ssl``: where a
        #: public name is really served; see :mod:`chorus_e2e.endpoint`).
        self.connect_options = dict(connect_options or {})
        self._ws: ClientConnection | None = None

    def url(self) -> str:
        """The URL of the next connection (with ``since`` = the last id received)."""
        params = []
        if self.token_in == "query":
            params.append(f"token={quote(self.token)}")
        if self.last_id:
            params.append(f"since={quote(self.last_id)}")
        query = f"?{'&'.join(params)}" if params else ""
        return f"{self.current_url}/ws/{self.room}{query}"

    async def _session(self) -> Close | None:
        url = self.url()
        protocols = [Subprotocol(SUBPROTOCOL)]
        if self.token_in == "subprotocol":
            protocols.append(Subprotocol(f"bearer.{self.token}"))
        try:
            async with connect(
                url,
                subprotocols=protocols,
                open_timeout=5,
                max_size=2**22,
                ping_interval=None,
                **self.connect_options,
            ) as ws:
                self._ws = ws
                self.connects += 1
                self.backoff.reset()
                self.connected.set()
                async for raw in ws:
                    self.record(orjson.loads(raw))
                return Close(ws.close_code or 1000, ws.close_reason or "", url)
        except ConnectionClosed as exc:
            return self._closed(exc, url)
        except (OSError, InvalidStatus, TimeoutError) as exc:
            return Close(1006, f"{type(exc).__name__}: {exc}", url)
        finally:
            self._ws = None
            if not self.reconnect:
                self.stopped = True

    @staticmethod
    def _closed(exc: ConnectionClosed, url: str) -> Close:
        if exc.rcvd is not None:
            return Close(exc.rcvd.code, exc.rcvd.reason, url)
        return Close(1006, "connection dropped", url)

    async def send(self, frame: Frame) -> None:
        """Send a raw frame (waits for a connection; ConnectionError once stopped)."""
        if self.stopped and self._ws is None:
            msg = "the client has stopped"
            raise ConnectionError(msg)
        await self.connected.wait()
        ws = self._ws
        if ws is None:  # dropped between "connected" and now: the caller decides
            msg = "the connection dropped"
            raise ConnectionError(msg)
        await ws.send(orjson.dumps(frame).decode())

    async def say(self, text: str, **extra: Any) -> None:
        """Send a chat message."""
        await self.send({"type": "message", "message": text, **extra})

    async def wait_subscribed(self, *, count: int = 1, timeout: float = 10.0) -> Frame:
        """The ``count``-th ``subscribed`` frame (one per (re)connection)."""
        await self.wait_for(lambda: len(self.of_type("subscribed")) >= count, timeout=timeout)
        return self.of_type("subscribed")[count - 1]

    def messages(self) -> list[str]:
        """Texts of the ``message`` events received, in order."""
        return [f["data"]["message"] for f in self.events if f["type"] == "message"]


class EventStreamClient(_Reconnecting):
    """An SSE client of ``/events`` that resumes with ``Last-Event-ID``."""

    def __init__(
        self,
        base_urls: Sequence[str],
        token: str,
        *,
        path: str = "/events",
        last_event_id: str | None = None,
        backoff: Backoff | None = None,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        super().__init__(base_urls, backoff=backoff)
        self.token = token
        self.path = path
        self.last_id = last_event_id
        self.statuses: list[int] = []
        #: Makes the HTTP transport of each connection (see :mod:`chorus_e2e.endpoint`).
        self.transport = transport

    async def _session(self) -> Close | None:
        url = f"{self.current_url}{self.path}"
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        timeout = httpx.Timeout(5.0, read=60.0)
        try:
            async with (
                httpx.AsyncClient(
                    timeout=timeout,
                    trust_env=False,
                    transport=self.transport() if self.transport is not None else None,
                ) as client,
                aconnect_sse(client, "GET", url, headers=headers) as source,
            ):
                self.statuses.append(source.response.status_code)
                if source.response.status_code != 200:
                    await source.response.aread()
                    code = 1008 if source.response.status_code in {401, 403} else 1013
                    return Close(code, source.response.text, url)
                self.connects += 1
                self.backoff.reset()
                self.connected.set()
                async for event in source.aiter_sse():
                    if event.data:
                        self.record(orjson.loads(event.data))
        except (httpx.HTTPError, OSError) as exc:
            return Close(1006, f"{type(exc).__name__}: {exc}", url)
        return Close(1000, "stream ended", url)


def now_ms() -> float:
    """Wall-clock milliseconds (benchmarks compare it with envelope ``ts``)."""
    return time.time() * 1000
