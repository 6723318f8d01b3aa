"""The bounded send queue of one connection.

Fan-out only ever *appends* to an outbox — it never waits on a client — so one stalled
socket cannot slow a room. The connection's own writer task takes frames out and writes
them; when a client stops reading, the transport applies back-pressure to that writer
alone, its outbox fills, and :meth:`Outbox.put` reports the overflow so the connection
is closed as a slow consumer.

A deque and one waiter future, rather than ``asyncio.Queue``: an idle outbox costs a few
hundred bytes, and a put is an append and (only when the writer sleeps) one wake-up.
"""

from __future__ import annotations

import asyncio
from collections import deque

from chorus_realtime.domain.frames import OutFrame

__all__ = ["Outbox"]


class Outbox:
    """Frames waiting to be written to one client, bounded in count and in size."""

    __slots__ = ("_bytes", "_closed", "_frames", "_waiter", "max_bytes", "max_frames")

    def __init__(self, *, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[OutFrame] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def closed(self) -> bool:
        """True once closed: nothing more is accepted and the writer stops."""
        return self._closed

    def put(self, frame: OutFrame) -> bool:
        """Queue ``frame``; False (frame dropped) when the bounds would be exceeded."""
        if self._closed:
            return True
        size = frame.size
        if len(self._frames) >= self.max_frames or self._bytes + size > self.max_bytes:
            return False
        self._frames.append(frame)
        self._bytes += size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def put_unbounded(self, frame: OutFrame) -> None:
        """Queue a control frame regardless of the bounds (a reply the client asked for)."""
        if self._closed:
            return
        self._frames.append(frame)
        self._bytes += frame.size
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

    def pop(self) -> OutFrame:
        """The oldest queued frame (call after :meth:`wait` returned True)."""
        frame = self._frames.popleft()
        self._bytes -= frame.size
        return frame

    def clear(self) -> None:
        """Drop everything queued (the connection is going away)."""
        self._frames.clear()
        self._bytes = 0

    def close(self) -> None:
        """Stop accepting frames and wake the writer so it can finish."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
