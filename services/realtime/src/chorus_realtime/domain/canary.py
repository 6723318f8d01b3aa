"""The self-checking subscriber: a canary through the replica's own pub/sub channel.

A pub/sub connection can look healthy (TCP open, no error) and still receive nothing —
a half-open socket after a network blip, a proxy that dropped the subscription, a Redis
failover that lost it. Every ``interval`` seconds the canary publishes to
``replica:<instance>`` (through :class:`EventBus`, like everything else) and waits for it
to come back through the hub's connection. If it does not within ``timeout``, the
replica stops looking ready and the hub rebuilds the connection; readiness returns with
the first canary that comes back.

A connection that is late but busy is not deaf: under a burst the canary waits behind
thousands of events, and rebuilding then would throw that backlog away and add a replay
of every channel to the load. So while events keep arriving the canary waits on, up to
``PATIENCE`` timeouts; only a connection that received nothing for a whole ``timeout``
(or a canary that is still missing after that) counts as deaf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import orjson

from chorus_common.events import EventBus
from chorus_realtime.domain.hub import Hub
from chorus_realtime.metrics import CANARY_FAILURES, CANARY_LAG

__all__ = ["Canary"]

logger = logging.getLogger("chorus.realtime.canary")

#: A canary stuck behind a backlog that keeps moving is waited for up to this many timeouts.
PATIENCE = 10


class Canary:
    """Publishes canaries and judges the hub's connection by their return."""

    def __init__(
        self, *, hub: Hub, bus: EventBus, instance: str, interval: float, timeout: float
    ) -> None:
        self.hub = hub
        self.bus = bus
        self.channel = f"replica:{instance}"
        self.instance = instance
        self.interval = interval
        self.timeout = timeout
        self._seq = 0
        self._sent: dict[int, float] = {}
        self._returned = asyncio.Event()
        self._expect = 0
        #: False until a canary came back, and after one did not.
        self.healthy = False
        self.last_lag: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen on the replica channel and start the canary loop."""
        self.hub.tap(self.channel, self._received)
        self._task = asyncio.create_task(self._run(), name="canary")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _received(self, payload: bytes) -> None:
        try:
            seq = int(orjson.loads(payload)["data"]["seq"])
        except (ValueError, KeyError, TypeError):
            return
        sent = self._sent.pop(seq, None)
        if sent is None:
            return
        self.last_lag = time.monotonic() - sent
        CANARY_LAG.set(self.last_lag)
        if seq == self._expect:
            self._returned.set()

    async def probe(self) -> bool | None:
        """Send one canary and wait for it: True when it came back in time, False when it
        did not, None when the connection was replaced meanwhile (nothing to judge)."""
        self._seq += 1
        seq = self._expect = self._seq
        self._returned.clear()
        self._sent = {seq: time.monotonic()}
        generation = self.hub.generation
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that races the awaited result, and then stop() would wait for ever.
        try:
            async with asyncio.timeout(self.timeout):
                await self.bus.publish_ephemeral(
                    self.channel, "canary", {"seq": seq}, sender=self.instance
                )
            for waited in range(1, PATIENCE + 1):
                received = self.hub.received
                try:
                    async with asyncio.timeout(self.timeout):
                        await self._returned.wait()
                    break
                except TimeoutError:
                    if self.hub.generation != generation:
                        return None
                    if waited == PATIENCE or self.hub.received == received:
                        raise
                    logger.info(
                        "canary %d late behind %d events; waiting on",
                        seq,
                        self.hub.received - received,
                    )
        except Exception as exc:  # Redis down, or the canary is lost: both are failures.
            logger.warning("canary %d failed: %s", seq, type(exc).__name__)
            return False
        return True

    async def _run(self) -> None:
        while True:
            if not self.hub.connected:
                self.healthy = False
                await asyncio.sleep(min(self.interval, 0.2))
                continue
            ok = await self.probe()
            if ok is None:
                continue
            if ok:
                if not self.healthy:
                    logger.info("canary back (lag %.1f ms)", (self.last_lag or 0) * 1000)
                self.healthy = True
                await asyncio.sleep(self.interval)
                continue
            CANARY_FAILURES.inc()
            self.healthy = False
            if self.hub.connected:
                self.hub.rebuild("canary")
