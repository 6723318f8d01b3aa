"""The fan-out hub: one Redis pub/sub connection per replica, shared by every local client.

- The hub SUBSCRIBEs to a channel when its first local subscriber arrives and
  UNSUBSCRIBEs after the last leaves. :meth:`Hub.subscribe` returns only once Redis has
  confirmed the *latest* SUBSCRIBE for the channel (a subscribe racing an unsubscribe
  counts acknowledgements), so a caller that reads history afterwards cannot miss an
  event between the two.
- Each published envelope is parsed once (:class:`OutFrame`) and the same frame object is
  appended to every subscriber's send queue from ``data_received``.
- An event that takes access to a room away (``member.removed``…, ``OutFrame.access``) is
  handed to :attr:`Hub.on_access` first, which drops the subscribers it concerns: they get
  neither it nor anything published after it — in stream order, live or replayed.
- When the connection is lost, or the canary says it went deaf, the hub rebuilds it with
  backoff, resubscribes every channel and, per channel, replays from the stream what was
  published while it was not listening (live events for that channel are held meanwhile
  and de-duplicated by stream id) — subscribers see no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Protocol

from chorus_common.events import EventBus, parse_stream_id, pubsub_channel
from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.metrics import CHANNELS, PUBSUB_RECONNECTS
from chorus_realtime.transport.pubsub import PubSubConnection, RedisAddress, open_pubsub

__all__ = ["Hub", "HubUnavailableError", "Sink"]

logger = logging.getLogger("chorus.realtime.hub")

_PREFIX = pubsub_channel("").encode()


class Sink(Protocol):
    """A local subscriber: receives frames synchronously and must never block."""

    def deliver(self, frame: OutFrame) -> None:
        """Take ``frame`` (queue it); called from the pub/sub reader."""


class HubUnavailableError(RuntimeError):
    """Redis did not confirm a subscription in time."""


class Hub:
    """Local subscriptions, the pub/sub connection behind them, and its self-repair."""

    def __init__(
        self,
        *,
        redis_url: str,
        bus: EventBus,
        client_name: str,
        connect_timeout: float = 3.0,
        subscribe_timeout: float = 5.0,
        replay_limit: int = 1000,
    ) -> None:
        self.bus = bus
        self._address = RedisAddress.from_url(redis_url)
        self._client_name = client_name
        self._connect_timeout = connect_timeout
        self._subscribe_timeout = subscribe_timeout
        self._replay_limit = replay_limit
        self._sinks: dict[str, dict[Sink, None]] = {}
        #: Snapshot of each channel's sinks, rebuilt on change (dispatch iterates it).
        self._targets: dict[str, tuple[Sink, ...]] = {}
        #: Internal listeners (the canary): raw payload callbacks per channel.
        self._taps: dict[str, Callable[[bytes], None]] = {}
        self._names: dict[bytes, str] = {}
        #: SUBSCRIBEs sent on the current connection and not yet acknowledged.
        self._pending: dict[str, int] = {}
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: Newest stream id dispatched (or known to subscribers) per channel.
        self._last: dict[str, tuple[int, int]] = {}
        self._last_text: dict[str, str] = {}
        #: Channels replaying a gap after a rebuild: live frames held here meanwhile.
        self._held: dict[str, list[OutFrame]] = {}
        self._conn: PubSubConnection | None = None
        self._lost = asyncio.Event()
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation = 0
        self._rebuild_reason = "error"
        self.rebuilds = 0
        #: Called with (channel, frame) for an access event, before anyone receives it.
        self.on_access: Callable[[str, OutFrame], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the connection supervisor (returns at once; see :attr:`connected`)."""
        self._runner = asyncio.create_task(self._supervise(), name="hub-supervisor")

    async def stop(self) -> None:
        """Close the connection and fail anyone still waiting for a confirmation."""
        self._stopping = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for task in list(self._tasks):
            task.cancel()
        if self._conn is not None:
            self._conn.abort()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(HubUnavailableError("hub stopped"))
        self._waiters.clear()

    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is open and every channel is confirmed."""
        if self._conn is None or not self._conn.open:
            return False
        return all(ch in self._confirmed for ch in (*self._sinks, *self._taps))

    @property
    def channel_count(self) -> int:
        """Channels with local subscribers."""
        return len(self._sinks)

    def rebuild(self, reason: str) -> None:
        """Drop the connection so the supervisor builds a new one (the canary calls this)."""
        logger.warning("rebuilding the pub/sub connection: %s", reason)
        self._rebuild_reason = reason
        if self._conn is not None:
            self._conn.abort()

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(self, channel: str, sink: Sink) -> None:
        """Add ``sink`` to ``channel``; returns once Redis confirmed the subscription."""
        sinks = self._sinks.get(channel)
        if sinks is None:
            self._sinks[channel] = {sink: None}
            self._targets[channel] = (sink,)
            CHANNELS.set(len(self._sinks))
            self._send_subscribe(channel)
        else:
            sinks[sink] = None
            self._targets[channel] = tuple(sinks)
        await self._wait_confirmed(channel)

    def unsubscribe(self, channel: str, sink: Sink) -> None:
        """Remove ``sink``; the last one out unsubscribes the replica from Redis."""
        sinks = self._sinks.get(channel)
        if sinks is None or sink not in sinks:
            return
        del sinks[sink]
        if sinks:
            self._targets[channel] = tuple(sinks)
            return
        del self._sinks[channel]
        del self._targets[channel]
        CHANNELS.set(len(self._sinks))
        self._confirmed.discard(channel)
        self._last.pop(channel, None)
        self._last_text.pop(channel, None)
        self._held.pop(channel, None)
        if self._conn is not None and self._conn.open:
            self._conn.unsubscribe(pubsub_channel(channel).encode())

    def subscribers(self, channel: str) -> tuple[Sink, ...]:
        """The local subscribers of ``channel`` (a snapshot)."""
        return self._targets.get(channel, ())

    def tap(self, channel: str, callback: Callable[[bytes], None]) -> None:
        """Listen to ``channel``'s raw payloads for as long as the hub runs (the canary)."""
        self._taps[channel] = callback
        self._send_subscribe(channel)

    def note_position(self, channel: str, stream_id: str | None) -> None:
        """A subscriber knows ``channel`` up to ``stream_id``: replay gaps from there on."""
        if stream_id is None or channel not in self._sinks:
            return
        key = parse_stream_id(stream_id)
        if key > self._last.get(channel, (0, 0)):
            self._last[channel] = key
            self._last_text[channel] = stream_id

    def _send_subscribe(self, channel: str) -> None:
        self._confirmed.discard(channel)
        if self._conn is not None and self._conn.open:
            self._pending[channel] = self._pending.get(channel, 0) + 1
            self._conn.subscribe(pubsub_channel(channel).encode())

    async def _wait_confirmed(self, channel: str) -> None:
        if channel in self._confirmed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, self._subscribe_timeout)
        except TimeoutError:
            msg = f"Redis did not confirm the subscription to {channel}"
            raise HubUnavailableError(msg) from None

    def _wake(self, channel: str) -> None:
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    # -- callbacks from the connection -------------------------------------------------------

    def _name(self, raw: bytes) -> str:
        name = self._names.get(raw)
        if name is None:
            name = raw[len(_PREFIX) :].decode()
            if len(self._names) > 100_000:
                self._names.clear()
            self._names[raw] = name
        return name

    def _on_ack(self, raw: bytes, subscribed: bool) -> None:
        if not subscribed:
            return
        channel = self._name(raw)
        left = self._pending.get(channel, 0) - 1
        if left > 0:
            self._pending[channel] = left
            return
        self._pending.pop(channel, None)
        if channel not in self._sinks and channel not in self._taps:
            return
        self._confirmed.add(channel)
        if channel in self._held:
            task = asyncio.create_task(self._replay_gap(channel), name=f"hub-replay:{channel}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._wake(channel)

    def _on_message(self, raw: bytes, payload: bytes) -> None:
        channel = self._name(raw)
        targets = self._targets.get(channel)
        if targets is None:
            tap = self._taps.get(channel)
            if tap is not None:
                tap(payload)
            return
        try:
            frame = OutFrame.event(payload)
        except ValueError:
            logger.warning("dropping a malformed event on %s", channel)
            return
        held = self._held.get(channel)
        if held is not None:
            held.append(frame)
            return
        self._dispatch(channel, frame, targets)

    def _dispatch(self, channel: str, frame: OutFrame, targets: tuple[Sink, ...]) -> None:
        key = frame.key
        if key is not None:
            last = self._last.get(channel)
            if last is not None and key <= last:
                return
            self._last[channel] = key
            assert frame.id is not None
            self._last_text[channel] = frame.id
        if frame.access and self.on_access is not None:
            # Rare (membership changes): the guard unsubscribes whoever lost access, so
            # they receive neither this event nor, since they are gone, any later one.
            self.on_access(channel, frame)
            targets = self._targets.get(channel, ())
        for sink in targets:
            sink.deliver(frame)

    # -- the connection supervisor -----------------------------------------------------------

    def _on_lost(self, generation: int, exc: Exception | None) -> None:
        if generation != self._generation:
            return
        self._confirmed.clear()
        self._pending.clear()
        self._lost.set()
        if not self._stopping:
            logger.warning("pub/sub connection lost: %s", exc or "closed")

    async def _connect(self) -> PubSubConnection:
        self._generation += 1
        generation = self._generation
        return await open_pubsub(
            self._address,
            client_name=self._client_name,
            connect_timeout=self._connect_timeout,
            on_message=self._on_message,
            on_ack=self._on_ack,
            on_lost=lambda exc: self._on_lost(generation, exc),
        )

    async def _supervise(self) -> None:
        delay = 0.05
        reason = "start"
        while not self._stopping:
            try:
                conn = await self._connect()
            except Exception as exc:
                logger.warning("pub/sub connect failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            PUBSUB_RECONNECTS.labels(reason).inc()
            self.rebuilds += 1
            self._lost.clear()
            self._conn = conn
            resumed = reason != "start"
            for channel in self._sinks:
                if resumed and channel in self._last:
                    # Hold live events until the gap is replayed from the stream.
                    self._held.setdefault(channel, [])
                self._pending[channel] = 1
            for channel in self._taps:
                self._pending[channel] = 1
            channels = [pubsub_channel(c).encode() for c in (*self._sinks, *self._taps)]
            # SUBSCRIBE takes many channels; chunk so one command stays small.
            for start in range(0, len(channels), 512):
                conn.subscribe(*channels[start : start + 512])
            await self._lost.wait()
            self._conn = None
            reason, self._rebuild_reason = self._rebuild_reason, "error"

    async def _replay_gap(self, channel: str) -> None:
        """After a rebuild: deliver what ``channel`` got while unheard, then the held frames."""
        since = self._last_text.get(channel)
        replayed: list[OutFrame] = []
        try:
            if since is not None:
                history = await self.bus.history(channel, since, limit=self._replay_limit)
                replayed = [OutFrame.event(e) for e in history.events]
        except Exception:
            logger.exception("could not replay the gap of %s", channel)
        held = self._held.pop(channel, [])
        targets = self._targets.get(channel)
        if targets is not None:
            for frame in (*replayed, *held):
                self._dispatch(channel, frame, targets)
        self._wake(channel)
