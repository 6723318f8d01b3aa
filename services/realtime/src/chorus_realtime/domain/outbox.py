"""The bounded send queue of one connection.

Fan-out only ever *appends* to an outbox — it never waits on a client — so one stalled
socket cannot slow a room. The connection's writer takes frames out and writes them;
when a client stops reading, the transport applies back-pressure to that writer alone,
its outbox fills, and :meth:`Outbox.put` reports the overflow so the connection is
closed as a slow consumer.

The writer learns that frames arrived either through the ``on_ready`` callback (the
WebSocket writer, which then writes them without a task of its own) or by awaiting
:meth:`Outbox.wait` (the SSE stream's generator). An idle outbox is an empty list and a
few slots: no deque block, no future, no task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chorus_realtime.domain.frames import OutFrame

__all__ = ["Outbox"]


class Outbox:
    """Frames waiting to be written to one client, bounded in count and in size."""

    __slots__ = (
        "_bytes",
        "_closed",
        "_frames",
        "_waiter",
        "max_bytes",
        "max_frames",
        "on_ready",
    )

    def __init__(
        self, *, max_frames: int, max_bytes: int, on_ready: Callable[[], None] | None = None
    ) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        #: Called when the outbox stops being empty, and when it is closed.
        self.on_ready = on_ready
        #: Queued frames, oldest first (a list is cheaper than a deque for the usual zero
        #: or one frame; the writer takes them all at once).
        self._frames: list[OutFrame] = []
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def size(self) -> int:
        """Characters queued (what ``max_bytes`` bounds)."""
        return self._bytes

    @property
    def closed(self) -> bool:
        """True once closed: nothing more is accepted and the writer stops."""
        return self._closed

    def put(self, frame: OutFrame) -> bool:
        """Queue ``frame``; False (frame dropped) when the bounds would be exceeded."""
        if self._closed:
            return True
        frames = self._frames
        queued = len(frames)
        size = frame.size
        if queued >= self.max_frames or self._bytes + size > self.max_bytes:
            return False
        # _append and _ready, inlined: this runs once per event per subscriber.
        frames.append(frame)
        self._bytes += size
        if not queued:
            if self.on_ready is not None:
                self.on_ready()
            if self._waiter is not None:
                self._wake_waiter()
        return True

    def put_unbounded(self, frame: OutFrame) -> None:
        """Queue a control frame regardless of the bounds (a reply the client asked for)."""
        if not self._closed:
            self._append(frame, frame.size)

    def _append(self, frame: OutFrame, size: int) -> None:
        frames = self._frames
        was_empty = not frames
        frames.append(frame)
        self._bytes += size
        if was_empty:
            self._ready()

    def _ready(self) -> None:
        if self.on_ready is not None:
            self.on_ready()
        if self._waiter is not None:
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> bool:
        """Wait until a frame is queued; False once closed with nothing left to write."""
        while not self._frames:
            if self._closed:
                return False
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return True

    def take_all(self) -> list[OutFrame]:
        """Every queued frame, oldest first (the outbox is empty afterwards)."""
        frames = self._frames
        self._frames = []
        self._bytes = 0
        return frames

    def clear(self) -> None:
        """Drop everything queued (the connection is going away)."""
        self._frames.clear()
        self._bytes = 0

    def close(self) -> None:
        """Stop accepting frames and wake the writer so it can finish."""
        self._closed = True
        self._ready()
