"""The fan-out hub: one Redis pub/sub connection per replica, shared by every local client.

- The hub SUBSCRIBEs to a channel when its first local subscriber arrives and
  UNSUBSCRIBEs after the last leaves. :meth:`Hub.subscribe` returns only once Redis has
  confirmed the *latest* SUBSCRIBE for the channel (a subscribe racing an unsubscribe
  counts acknowledgements), so a caller that reads history afterwards cannot miss an
  event between the two.
- Each published envelope is parsed once (:class:`OutFrame`), and the events of one read
  from Redis go to each subscriber together, from ``data_received``: a run of events of
  one channel is handed to every sink with its WebSocket bytes joined once, so one event
  costs each client socket one write, and a burst costs it one write too.
- An event that takes access to a room away (``member.removed``…, ``OutFrame.access``)
  ends the run before it: what came earlier goes to everyone subscribed then, and the event
  is handed to :attr:`Hub.on_access`, which drops the subscribers it concerns, before it
  goes to the rest — so they get neither it nor anything published after it, in stream
  order, live or replayed.
- When the connection is lost, or the canary says it went deaf, the hub rebuilds it with
  backoff, resubscribes every channel and, per channel, replays from the stream what was
  published while it was not listening (live events for that channel are held meanwhile
  and de-duplicated by stream id) — subscribers see no gap, no duplicate. Replays run a
  few at a time (a replica with thousands of channels would otherwise exhaust its Redis
  pool at once) and are retried; a gap that cannot be replayed whole (Redis keeps failing,
  or it is longer than ``replay_limit`` or left history) interrupts the channel's
  subscribers instead, so that they resume from their own position rather than miss
  events silently.
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
from chorus_realtime.metrics import CHANNELS, DELIVERIES, PUBSUB_RECONNECTS
from chorus_realtime.transport.pubsub import PubSubConnection, RedisAddress, open_pubsub

__all__ = ["Batch", "Hub", "HubUnavailableError", "Sink"]

logger = logging.getLogger("chorus.realtime.hub")

_PREFIX = pubsub_channel("").encode()
#: Gap replays after a rebuild that run at once (each is one history read from Redis).
REPLAY_CONCURRENCY = 8
#: Attempts at one gap replay (with backoff) before its subscribers are interrupted.
REPLAY_ATTEMPTS = 5


class Batch:
    """Events of one channel from one read of Redis, in order, as every sink gets them."""

    __slots__ = ("channel", "first_key", "frames", "last_id", "last_key", "wire")

    def __init__(self, channel: str, frames: list[OutFrame]) -> None:
        self.channel = channel
        self.frames = frames
        #: The frames as WebSocket frames, joined: built once, written to every socket.
        self.wire = (
            frames[0].websocket()
            if len(frames) == 1
            else b"".join([frame.websocket() for frame in frames])
        )
        #: The first and last stream ids (keys ascend: the hub dropped what it had sent).
        self.first_key: tuple[int, int] | None = None
        self.last_key: tuple[int, int] | None = None
        self.last_id: str | None = None
        for frame in frames:
            if frame.key is not None:
                if self.first_key is None:
                    self.first_key = frame.key
                self.last_key, self.last_id = frame.key, frame.id


class Sink(Protocol):
    """A local subscriber: receives frames synchronously and must never block."""

    def deliver(self, batch: Batch) -> bool:
        """Take ``batch``; called from the pub/sub reader.

        True when all of its frames were written to the client at once (the hub counts
        those deliveries); False when the sink queued them, or skipped some, and counts
        what it writes itself.
        """

    def interrupted(self) -> None:
        """Events of one of the sink's channels were lost in a reconnect (see the module)."""


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
        #: Newest stream id dispatched live per channel: what is not above it is dropped.
        self._last: dict[str, tuple[int, int]] = {}
        self._last_text: dict[str, str] = {}
        #: Before any live event of a channel: the oldest position its subscribers started
        #: from (their history reads), where a gap replay would start.
        self._noted: dict[str, tuple[tuple[int, int], str]] = {}
        #: Channels replaying a gap after a rebuild: live frames held here meanwhile.
        self._held: dict[str, list[OutFrame]] = {}
        self._conn: PubSubConnection | None = None
        self._lost = asyncio.Event()
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._replays = asyncio.Semaphore(REPLAY_CONCURRENCY)
        #: Messages received on the pub/sub connections so far (the canary's sign of life).
        self.received = 0
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
    def generation(self) -> int:
        """Counts the pub/sub connections made: it changes when the connection is replaced."""
        return self._generation

    @property
    def channel_count(self) -> int:
        """Channels with local subscribers."""
        return len(self._sinks)

    def subscribers(self, channel: str) -> tuple[Sink, ...]:
        """The local subscribers of ``channel`` (a snapshot)."""
        return self._targets.get(channel, ())

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
        self._noted.pop(channel, None)
        self._held.pop(channel, None)
        if self._conn is not None and self._conn.open:
            self._conn.unsubscribe(pubsub_channel(channel).encode())

    def tap(self, channel: str, callback: Callable[[bytes], None]) -> None:
        """Listen to ``channel``'s raw payloads for as long as the hub runs (the canary)."""
        self._taps[channel] = callback
        self._send_subscribe(channel)

    def note_position(self, channel: str, stream_id: str | None) -> None:
        """A subscriber knows ``channel`` up to ``stream_id`` (from history): a gap replay
        after a rebuild starts there if no live event was dispatched yet.

        It never moves the live position: that history read may have run ahead of the
        pub/sub connection, and a live event at or below ``stream_id`` still on its way must
        reach the other subscribers (this one skips it: its connection knows the id).
        """
        if stream_id is None or channel not in self._sinks or channel in self._last:
            return
        key = parse_stream_id(stream_id)
        noted = self._noted.get(channel)
        if noted is None or key < noted[0]:
            self._noted[channel] = (key, stream_id)

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

    def _on_messages(self, messages: list[tuple[bytes, bytes]]) -> None:
        """The messages of one read, in order: each run of one channel's events goes out at once."""
        self.received += len(messages)
        run: list[OutFrame] = []
        run_channel = ""
        last, last_text = self._last, self._last_text
        for raw, payload in messages:
            channel = self._name(raw)
            if channel not in self._targets:
                tap = self._taps.get(channel)
                if tap is not None:
                    tap(payload)
                continue
            try:
                frame = OutFrame.event(payload)
            except ValueError:
                logger.warning("dropping a malformed event on %s", channel)
                continue
            held = self._held.get(channel)
            if held is not None:
                held.append(frame)
                continue
            key = frame.key
            if key is not None:  # _fresh, inlined: this runs once per event
                previous = last.get(channel)
                if previous is not None and key <= previous:
                    continue
                last[channel] = key
                last_text[channel] = frame.id  # type: ignore[assignment]
            if channel != run_channel or frame.access:
                if run:
                    self._fanout(Batch(run_channel, run), self._targets.get(run_channel, ()))
                    run = []
                if frame.access:  # what came before went out to everyone subscribed then
                    self._access(channel, frame)
            run_channel = channel
            run.append(frame)
        if run:
            self._fanout(Batch(run_channel, run), self._targets.get(run_channel, ()))

    def _access(self, channel: str, frame: OutFrame) -> None:
        # Rare (membership changes): the guard unsubscribes whoever lost access, so they
        # receive neither this event nor, since they are gone, any later one.
        if self.on_access is not None:
            self.on_access(channel, frame)

    def _fresh(self, channel: str, frame: OutFrame) -> bool:
        """True (and the channel's position moved) unless ``frame`` was dispatched already."""
        key = frame.key
        if key is None:
            return True
        previous = self._last.get(channel)
        if previous is not None and key <= previous:
            return False
        self._last[channel] = key
        assert frame.id is not None
        self._last_text[channel] = frame.id
        return True

    @staticmethod
    def _fanout(batch: Batch, targets: tuple[Sink, ...]) -> None:
        """Hand ``batch`` to every sink; count the sockets it was written to at once."""
        written = 0
        for sink in targets:
            if sink.deliver(batch):
                written += 1
        if written:
            DELIVERIES.delivered([frame.published_at for frame in batch.frames], written)

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
            on_messages=self._on_messages,
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
                if resumed and (channel in self._last or channel in self._noted):
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
        noted = self._noted.get(channel)
        since = self._last_text.get(channel) or (noted[1] if noted else None)
        replayed = await self._read_gap(channel, since)
        held = self._held.pop(channel, [])
        targets = self._targets.get(channel)
        if targets is not None:
            if replayed is None:
                for sink in targets:
                    sink.interrupted()
            else:
                fresh = [frame for frame in (*replayed, *held) if self._fresh(channel, frame)]
                start = 0
                for index, frame in enumerate(fresh):
                    if frame.access:
                        if index > start:
                            batch = Batch(channel, fresh[start:index])
                            self._fanout(batch, self._targets.get(channel, ()))
                        self._access(channel, frame)
                        start = index
                if start < len(fresh):
                    self._fanout(Batch(channel, fresh[start:]), self._targets.get(channel, ()))
        self._wake(channel)

    async def _read_gap(self, channel: str, since: str | None) -> list[OutFrame] | None:
        """The events published after ``since``; None when they cannot all be had."""
        if since is None:
            return []
        delay = 0.05
        for attempt in range(1, REPLAY_ATTEMPTS + 1):
            try:
                async with self._replays:
                    history = await self.bus.history(channel, since, limit=self._replay_limit)
            except Exception as exc:
                if attempt == REPLAY_ATTEMPTS:
                    logger.error(
                        "could not replay the gap of %s (%s); its subscribers resume themselves",
                        channel,
                        exc,
                    )
                    return None
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, 2.0)
                continue
            if not history.recovered or history.more:
                logger.warning(
                    "the gap of %s is not all in history; its subscribers resume themselves",
                    channel,
                )
                return None
            return [OutFrame.event(event) for event in history.events]
        return None
