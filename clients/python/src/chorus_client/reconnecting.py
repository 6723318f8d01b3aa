"""What both clients share: the frames received, the last stream id, the reconnect loop.

A client keeps one connection open in a background task. When it ends — the server closed
it, the network dropped it, the replica went away — the client records how (:class:`Close`),
moves on to the next of its base URLs (as a load balancer would send it elsewhere), waits
a :class:`~chorus_client.backoff.Backoff` delay and connects again, resuming from the
stream id of the last event it received. A close that reconnecting cannot fix (a refused
token, a policy violation, a frame too large: :data:`FINAL_CLOSE_CODES`) stops it.

Every frame received is kept (``frames``; ``max_frames`` bounds how many) and handed to
``on_frame``, so an application reacts as frames arrive and a test checks order, gaps and
duplicates afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Self

from chorus_client.backoff import Backoff

__all__ = ["FINAL_CLOSE_CODES", "Close", "Frame", "FrameHandler", "ReconnectingClient"]

#: A frame as received: a JSON object.
Frame = dict[str, Any]
#: Called with every frame as it arrives.
FrameHandler = Callable[[Frame], None]

#: Close codes after which reconnecting cannot help (auth, policy, size; 4401: the token
#: expired or was revoked — log in again first; 4403: the room refused you or took your
#: access away).
FINAL_CLOSE_CODES: Final = frozenset({1008, 1009, 4401, 4403})


@dataclass(frozen=True)
class Close:
    """How a connection ended: the close code and reason (1006 when it just dropped)."""

    code: int
    reason: str
    url: str


class ReconnectingClient:
    """The frames received and the reconnect loop; subclasses hold one connection each."""

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        backoff: Backoff | None = None,
        on_frame: FrameHandler | None = None,
        max_frames: int | None = None,
    ) -> None:
        if not base_urls:
            msg = "at least one base URL"
            raise ValueError(msg)
        self.base_urls = list(base_urls)
        self.backoff = backoff or Backoff()
        self.on_frame = on_frame
        #: Every frame received, oldest first (the newest ``max_frames`` when bounded).
        self.frames: deque[Frame] = deque(maxlen=max_frames)
        #: How each connection ended, oldest first.
        self.closes: list[Close] = []
        #: The stream id to resume from: the last event received (or the channel's
        #: position when the client joined and has received nothing yet).
        self.last_id: str | None = None
        #: Connections made so far.
        self.connects = 0
        #: Set while a connection is up.
        self.connected = asyncio.Event()
        #: True once the client will not reconnect (stopped, or a final close).
        self.stopped = False
        self._changed = asyncio.Event()
        self._attempts = 0
        self._task: asyncio.Task[None] | None = None

    # -- what was received -----------------------------------------------------------------

    def record(self, frame: Frame) -> None:
        """Keep ``frame``, advance the resume position, and hand it to ``on_frame``."""
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
        self._changed.set()
        if self.on_frame is not None:
            self.on_frame(frame)

    @property
    def events(self) -> list[Frame]:
        """Durable events (envelopes with a stream id), in arrival order."""
        return [f for f in self.frames if isinstance(f.get("id"), str) and "channel" in f]

    def of_type(self, kind: str) -> list[Frame]:
        """Frames of one ``type``."""
        return [f for f in self.frames if f.get("type") == kind]

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` holds; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # -- the connection ----------------------------------------------------------------------

    @property
    def current_url(self) -> str:
        """The base URL in use (or to be tried next)."""
        return self.base_urls[self._attempts % len(self.base_urls)]

    async def connect_once(self) -> Close | None:
        """Hold one connection until it ends; how it ended (None: stopped on purpose)."""
        raise NotImplementedError

    def connection_made(self) -> None:
        """A subclass calls this once its connection is up."""
        self.connects += 1
        self.backoff.reset()
        self.connected.set()

    async def _run(self) -> None:
        while True:
            close = await self.connect_once()
            self.connected.clear()
            if close is not None:
                self.closes.append(close)
                self._changed.set()
                if close.code in FINAL_CLOSE_CODES:
                    self.stopped = True
            if self.stopped:
                return
            self._attempts += 1  # the next base URL
            await asyncio.sleep(self.backoff.next_delay())

    async def start(self) -> Self:
        """Connect in the background; returns once the first connection is up.

        Raises what ended the loop if it ended before connecting (e.g. a final close).
        """
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
