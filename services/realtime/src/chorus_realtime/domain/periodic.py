"""A sweep in the background: one coroutine, called every few seconds while the replica runs.

The token watch and the room guard re-check this replica's open connections this way. A
Redis error skips a turn (logged): both are re-checks, and the next turn catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

__all__ = ["Periodic"]

logger = logging.getLogger("chorus.realtime.periodic")


class Periodic:
    """Calls ``action`` every ``interval`` seconds until stopped."""

    def __init__(
        self, action: Callable[[], Awaitable[object]], *, interval: float, name: str, what: str
    ) -> None:
        self.action = action
        self.interval = interval
        self.name = name
        #: What a skipped turn could not do, for the log line.
        self.what = what
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.action()
            except (RedisError, OSError) as exc:
                logger.warning("could not %s: %s", self.what, exc)

    def start(self) -> None:
        """Start calling in the background (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop calling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
