"""Stopping a running upstream call from outside: client disconnects and stream timeouts.

A call runs in its own task. A client disconnect (noticed by the route's watcher on ASGI
``receive``) or a lapsed idle/total deadline *interrupts* it: the reason is recorded
and the task cancelled, so whatever it awaits — the provider's next bytes, usually —
is abandoned at once and the upstream connection is closed in its ``finally``. The call
then absorbs its own cancellation (``Task.uncancel``) and ends the stream properly,
while a cancellation it did not ask for (server shutdown) still propagates.
"""

from __future__ import annotations

import asyncio

__all__ = ["Interruptible", "Watchdog"]

CLIENT_DISCONNECTED = "client_disconnected"
TIMEOUT_IDLE = "timeout_idle"
TIMEOUT_TOTAL = "timeout_total"


class Interruptible:
    """Base of a call that others may interrupt with a reason."""

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self._closed = False
        self._absorbed = False
        self.reason: str | None = None

    def bind(self) -> None:
        """Mark the current task as the one to cancel."""
        self._task = asyncio.current_task()

    def interrupt(self, reason: str) -> None:
        """Stop the call for ``reason`` (the first reason wins; no-op once closed)."""
        if self._closed or self.reason is not None or self._task is None:
            return
        self.reason = reason
        self._task.cancel(reason)

    def absorb(self) -> bool:
        """In ``except CancelledError``: True (and uncancelled) if it was our interrupt."""
        if self.reason is None or self._absorbed or self._task is None:
            return False
        self._absorbed = True
        self._task.uncancel()
        return True

    async def close_interrupts(self) -> None:
        """Accept no more interrupts, and consume one requested but not yet delivered."""
        self._closed = True
        if self.reason is not None and not self._absorbed:
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                if not self.absorb():
                    raise


class Watchdog:
    """Interrupts a stream idle for ``idle`` seconds or running past ``deadline``.

    Cheap per chunk: :meth:`touch` stores a timestamp; a single timer re-arms itself
    lazily instead of being rescheduled on every chunk. While the client is being
    written to (``writing``), idleness is the client's doing, not the provider's.
    """

    def __init__(self, call: Interruptible, *, idle: float, deadline: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._call = call
        self._idle = idle
        self._deadline = deadline
        self.last = self._loop.time()
        self.writing = False
        self._handle = self._loop.call_at(min(self.last + idle, deadline), self._check)

    def touch(self) -> None:
        """The provider just sent something."""
        self.last = self._loop.time()

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self._deadline:
            self._call.interrupt(TIMEOUT_TOTAL)
            return
        if now >= self.last + self._idle and not self.writing:
            self._call.interrupt(TIMEOUT_IDLE)
            return
        due = self.last + self._idle if not self.writing else now + self._idle
        self._handle = self._loop.call_at(min(due, self._deadline), self._check)

    def cancel(self) -> None:
        """Stop watching."""
        self._handle.cancel()
