"""Prompt detection of a client going away while a response is in progress.

A streaming handler spends its time sleeping between tokens (or hanging on
purpose), and uvicorn's `send()` silently does nothing once the peer is gone.
So a watcher task waits on `receive()`, which uvicorn completes with
`http.disconnect` the moment the connection is lost, notes the time, and
cancels the handler, which then records the disconnect and returns.
"""

from __future__ import annotations

import asyncio
import time

from chorus_mock_openai.asgi import Receive

__all__ = ["DisconnectWatcher"]


class DisconnectWatcher:
    """Cancels the current task when the client disconnects; use `with`-like start/stop."""

    __slots__ = ("_finished", "_receive", "_target", "_task", "at", "at_monotonic")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._finished = False
        self._task: asyncio.Task[None] | None = None
        self._target: asyncio.Task[object] | None = None
        self.at: float | None = None
        """Wall-clock time the disconnect was detected, if it was."""
        self.at_monotonic: float | None = None

    @property
    def disconnected(self) -> bool:
        """Whether the client has gone away."""
        return self.at is not None

    def start(self) -> None:
        """Start watching; call after the request body has been read in full."""
        self._target = asyncio.current_task()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        """Stop watching; a disconnect noticed after this point is ignored."""
        self._finished = True
        if self._task is not None:
            self._task.cancel()

    def absorb(self) -> bool:
        """Call in `except CancelledError`: True if the cancellation was ours (and undo it)."""
        if not self.disconnected:
            return False
        if self._target is not None:
            self._target.uncancel()
        return True

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        # uvicorn also answers receive() with http.disconnect once the response
        # is complete; `_finished` tells that apart from a real disconnect.
        if self._finished:
            return
        self.at = time.time()
        self.at_monotonic = time.monotonic()
        if self._target is not None:
            self._target.cancel()
