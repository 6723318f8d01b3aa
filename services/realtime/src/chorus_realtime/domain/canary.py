"""The self-checking subscriber: a canary through each of the replica's pub/sub connections.

A pub/sub connection can look healthy (TCP open, no error) and still receive nothing —
a half-open socket after a network blip, a proxy that dropped the subscription, a Redis
failover that lost it. Every ``interval`` seconds the canary publishes to
``replica:<instance>`` (through :class:`EventBus`, like everything else) and waits for it
to come back through the hub's connection. If it does not within ``timeout``, the
replica stops looking ready and the hub rebuilds the connection; readiness returns with
the first canary that comes back.

On a Redis Cluster the hub holds a connection per node serving subscribed channels, and
each is checked through a channel of its own node (``replica:<instance>:<n>``, the first
such name whose hash slot that node owns): a node that went deaf is rebuilt alone, and
the replica is ready only while every connection hears its canary.

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
from functools import partial

import orjson

from chorus_common.events import EventBus
from chorus_realtime.domain.hub import Hub
from chorus_realtime.metrics import CANARY_FAILURES, CANARY_LAG

__all__ = ["Canary"]

logger = logging.getLogger("chorus.realtime.canary")

#: A canary stuck behind a backlog that keeps moving is waited for up to this many timeouts.
PATIENCE = 10


class Canary:
    """Publishes canaries and judges the hub's connections by their return."""

    def __init__(
        self, *, hub: Hub, bus: EventBus, instance: str, interval: float, timeout: float
    ) -> None:
        self.hub = hub
        self.bus = bus
        #: The replica's own channel (on one Redis, the only one).
        self.channel = f"replica:{instance}"
        self.instance = instance
        self.interval = interval
        self.timeout = timeout
        self._seq = 0
        #: Node → the canary channel it is checked through (tapped on the hub).
        self._channels: dict[str, str] = {}
        #: Channel → (sequence number expected back, when it was sent).
        self._sent: dict[str, tuple[int, float]] = {}
        self._returned: dict[str, asyncio.Event] = {}
        #: False until a canary came back, and after one did not.
        self.healthy = False
        self.last_lag: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen on the replica channel and start the canary loop."""
        self._sync()
        self._task = asyncio.create_task(self._run(), name="canary")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _sync(self) -> None:
        """Tap one channel per node serving channels (and the replica's own, always)."""
        wanted = {self.channel}
        wanted |= {self.hub.channel_on(self.channel, node) for node in self.hub.data_nodes()}
        for channel in set(self._returned) - wanted:
            self.hub.untap(channel)
            del self._returned[channel]
        for channel in wanted - set(self._returned):
            self._returned[channel] = asyncio.Event()
            self.hub.tap(channel, partial(self._received, channel))
        self._channels = {}
        for channel in wanted:
            node = self.hub.node_of(channel)
            if node is not None:
                self._channels[node] = channel

    def _received(self, channel: str, payload: bytes) -> None:
        try:
            seq = int(orjson.loads(payload)["data"]["seq"])
        except (ValueError, KeyError, TypeError):
            return
        sent = self._sent.get(channel)
        if sent is None or sent[0] != seq:
            return
        del self._sent[channel]
        self.last_lag = time.monotonic() - sent[1]
        CANARY_LAG.set(self.last_lag)
        self._returned[channel].set()

    async def _probe_one(self, node: str, channel: str, seq: int) -> bool | None:
        """One canary through ``node``'s connection: True when it came back in time, False
        when it did not, None when that connection was replaced meanwhile (nothing to judge)."""
        returned = self._returned[channel]
        returned.clear()
        self._sent[channel] = (seq, time.monotonic())
        generation = self.hub.node_generation(node)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that races the awaited result, and then stop() would wait for ever.
        try:
            async with asyncio.timeout(self.timeout):
                await self.bus.publish_ephemeral(
                    channel, "canary", {"seq": seq}, sender=self.instance
                )
            for waited in range(1, PATIENCE + 1):
                received = self.hub.received
                try:
                    async with asyncio.timeout(self.timeout):
                        await returned.wait()
                    break
                except TimeoutError:
                    if self.hub.node_generation(node) != generation:
                        return None
                    if waited == PATIENCE or self.hub.received == received:
                        raise
                    logger.info(
                        "canary %d on %s late behind %d events; waiting on",
                        seq,
                        channel,
                        self.hub.received - received,
                    )
        except Exception as exc:  # Redis down, or the canary is lost: both are failures.
            logger.warning("canary %d on %s failed: %s", seq, channel, type(exc).__name__)
            return False
        return True

    async def probe(self) -> list[str]:
        """Send one canary through each connection and wait for them; returns the nodes
        whose canary did not come back in time (empty: all did, or could not be judged)."""
        self._seq += 1
        nodes = list(self._channels)
        results = await asyncio.gather(
            *(self._probe_one(node, self._channels[node], self._seq) for node in nodes)
        )
        # None: that connection was replaced while its canary was out — not a failure.
        return [node for node, ok in zip(nodes, results, strict=True) if ok is False]

    async def _run(self) -> None:
        while True:
            self._sync()
            if not self.hub.connected:
                self.healthy = False
                await asyncio.sleep(min(self.interval, 0.2))
                continue
            failed = await self.probe()
            if not failed:
                if not self.healthy:
                    logger.info("canary back (lag %.1f ms)", (self.last_lag or 0) * 1000)
                self.healthy = True
                await asyncio.sleep(self.interval)
                continue
            CANARY_FAILURES.inc(len(failed))
            self.healthy = False
            for node in failed:
                if self.hub.node_connected(node):
                    self.hub.rebuild("canary", node)
