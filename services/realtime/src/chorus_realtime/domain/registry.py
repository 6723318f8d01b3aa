"""The connections of this replica, and the drain that sends them elsewhere on SIGTERM.

Draining flips :attr:`Registry.accepting` (new connections are refused with 1012 / 503),
then closes the open ones spread evenly over the first 80% of the window, so the other
replicas absorb the reconnects gradually instead of all at once. Each client gets what
was queued for it, then a ``reconnect`` frame with the last stream id it received per
channel, then close 1012 (an SSE stream just ends, and EventSource resumes with
``Last-Event-ID``). Whatever is still open when the window ends is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from chorus_realtime.domain.connection import CloseCode, Connection
from chorus_realtime.metrics import CONNECTIONS

__all__ = ["Registry"]

logger = logging.getLogger("chorus.realtime.registry")

#: Share of the drain window over which closes are spread (the rest lets them finish).
SPREAD = 0.8


class Registry:
    """Open connections, counted per transport."""

    def __init__(self) -> None:
        self._connections: dict[Connection, None] = {}
        self._empty = asyncio.Event()
        self._empty.set()
        self.accepting = True

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, connection: Connection) -> None:
        """Track a new connection."""
        self._connections[connection] = None
        self._empty.clear()
        CONNECTIONS.labels(connection.transport).inc()

    def remove(self, connection: Connection) -> None:
        """Forget a finished connection."""
        if self._connections.pop(connection, False) is None:
            CONNECTIONS.labels(connection.transport).dec()
        if not self._connections:
            self._empty.set()

    def __iter__(self) -> Iterator[Connection]:
        """The open connections (a snapshot: closing them while iterating is fine)."""
        return iter(list(self._connections))

    def count(self, user: str) -> int:
        """Connections of ``user`` on this replica."""
        return sum(1 for c in self._connections if c.user == user)

    async def drain(self, window: float) -> None:
        """Refuse new connections and close the open ones over ``window`` seconds."""
        self.accepting = False
        connections = list(self._connections)
        logger.info("draining %d connections over %.1fs", len(connections), window)
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + window
        step = window * SPREAD / max(1, len(connections))
        for index, connection in enumerate(connections):
            due = start + index * step
            delay = due - loop.time()
            if delay > 0.001:
                await asyncio.sleep(delay)
            connection.close(CloseCode.RESTART, "server restarting")
        try:
            await asyncio.wait_for(self._empty.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            left = list(self._connections)
            logger.warning("drain window over: dropping %d connections", len(left))
            for connection in left:
                connection.abort()
