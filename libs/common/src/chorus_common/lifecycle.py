"""Process lifecycle: the draining flag and the hooks that run on SIGTERM.

Kubernetes sends SIGTERM and, in parallel, removes the pod from Service endpoints. A
process must first stop looking ready, then let its long-lived connections go (realtime
closes sockets with 1012 spread over a window), and only then stop serving. ``server.py``
calls :meth:`Lifecycle.drain` before uvicorn's own graceful shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["DrainHook", "Lifecycle"]

logger = logging.getLogger("chorus.lifecycle")

#: Called with the drain window in seconds; should return once its connections are gone.
DrainHook = Callable[[float], Coroutine[Any, Any, None]]


class Lifecycle:
    """Holds whether the process is draining and what to do when it starts to."""

    def __init__(self) -> None:
        self._draining = asyncio.Event()
        self._hooks: list[tuple[str, DrainHook]] = []

    @property
    def draining(self) -> bool:
        """True once SIGTERM (or a test) started the drain; readiness reports 503."""
        return self._draining.is_set()

    async def wait_draining(self) -> None:
        """Return when draining starts (streams use this to end themselves)."""
        await self._draining.wait()

    def add_drain_hook(self, name: str, hook: DrainHook) -> None:
        """Register a hook run concurrently with the others when draining starts."""
        self._hooks.append((name, hook))

    async def drain(self, window: float) -> None:
        """Flip to draining and run every hook, giving them ``window`` seconds in total."""
        if self.draining:
            return
        self._draining.set()
        logger.info("draining", extra={"window_s": window, "hooks": [n for n, _ in self._hooks]})
        if not self._hooks:
            return
        tasks = [asyncio.create_task(hook(window), name=f"drain:{n}") for n, hook in self._hooks]
        # Hooks get the window plus a second to finish their last closes; then we move on.
        done, pending = await asyncio.wait(tasks, timeout=window + 1.0)
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.error("drain hook %s failed", task.get_name(), exc_info=task.exception())
