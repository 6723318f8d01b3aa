"""Streaming an answer into a room as ``ai.delta`` events, coalescing tokens that bunch up.

Models emit tokens at 20-200 per second, often in bursts (several per network read). One
event per token would cost every realtime replica one fan-out per token per listener;
:class:`DeltaPublisher` instead publishes what has arrived, then lets tokens gather for
``interval`` seconds (``ASSISTANT_DELTA_INTERVAL``, 20 ms by default) before the next
event. A lone token is published at once, so the first token is never delayed; a burst
costs one event per interval, and the added latency is at most the interval — below what
a reader can notice. Each event's ``index`` counts events of the reply from 0, so a
client can tell a gap, and a retried reply (which starts over) by ``index`` 0.
"""

from __future__ import annotations

import asyncio
import contextlib

from chorus_common.events import EventBus

__all__ = ["ASSISTANT_SENDER", "DeltaPublisher"]

#: The ``from`` of everything the assistant publishes.
ASSISTANT_SENDER = "assistant"


class DeltaPublisher:
    """Publishes a reply's text as it grows; :meth:`close` flushes the rest."""

    def __init__(self, bus: EventBus, channel: str, *, reply_to: str, interval: float) -> None:
        self.bus = bus
        self.channel = channel
        self.reply_to = reply_to
        self.interval = interval
        self.events = 0
        self._parts: list[str] = []
        self._pending: list[str] = []
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        """Everything added so far."""
        return "".join(self._parts)

    def start(self) -> None:
        """Begin publishing in the background."""
        self._task = asyncio.create_task(self._run(), name=f"deltas:{self.reply_to}")

    def add(self, delta: str) -> None:
        """Queue ``delta`` for the next event; raises if publishing has failed."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            error = self._task.exception()
            if error is not None:
                raise error
        if delta:
            self._parts.append(delta)
            self._pending.append(delta)
            self._ready.set()

    async def _flush(self) -> None:
        if not self._pending:
            return
        delta = "".join(self._pending)
        self._pending.clear()
        await self.bus.publish(
            self.channel,
            "ai.delta",
            {"reply_to": self.reply_to, "delta": delta, "index": self.events},
            sender=ASSISTANT_SENDER,
        )
        self.events += 1

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self._flush()
            if self._closing.is_set():
                while self._pending:  # added while the last event was being published
                    await self._flush()
                return
            if self.interval > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.interval)

    async def close(self) -> None:
        """Publish what is left and stop (re-raising a publishing failure)."""
        self._closing.set()
        self._ready.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def cancel(self) -> None:
        """Stop without flushing (the job is being cancelled)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
