"""The fan-out hub: the replica's pub/sub connections, shared by every local client.

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
- There is one connection per *node* (:mod:`~chorus_realtime.transport.topology`): the one
  Redis (or the primary its Sentinels name), or each Redis Cluster primary that owns the
  slot of a subscribed channel — sharded pub/sub, ``SSUBSCRIBE`` there.
- When a connection is lost, or the canary says it went deaf, the hub rebuilds it with
  backoff (asking the Sentinels, or re-reading the slot map, where the node is now),
  resubscribes its channels and, per channel, replays from the stream what was published
  while it was not listening (live events for that channel are held meanwhile and
  de-duplicated by stream id) — subscribers see no gap, no duplicate. A channel whose slot
  moves to another node (a cluster failover, a slot migration: the node unsubscribes it,
  or answers ``MOVED``) is resubscribed on the new owner and its gap replayed the same way.
  Replays run a few at a time (a replica with thousands of channels would otherwise
  exhaust its Redis pool at once) and are retried; a gap that cannot be replayed whole
  (Redis keeps failing, or it is longer than ``replay_limit`` or left history) interrupts
  the channel's subscribers instead, so that they resume from their own position rather
  than miss events silently — once: the hub's position moves past that gap (to the
  stream's newest id), so a later rebuild does not report it again. One replay runs per
  channel; a channel lost again while it reads is read again by that replay.
- With tracing on, a live event whose envelope carries a *sampled* ``traceparent`` is
  delivered inside a consumer span ``deliver <type>``, the child of the publisher's
  span: one per replica and event (not per socket), from the read off Redis until the
  frames are written to every socket that takes them at once. Such an event goes out as
  a batch of its own. The ``traceparent`` is the envelope's last key, found with one
  search of the bytes; an event without one, or unsampled, costs the search and nothing
  else. With tracing off nothing of this runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import NamedTuple, Protocol

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from redis.crc import key_slot

from chorus_common.events import EventBus, parse_stream_id
from chorus_common.trace_context import context_from_traceparent, is_sampled
from chorus_common.tracing import tracer
from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.metrics import (
    CHANNEL_MOVES,
    CHANNELS,
    DELIVERIES,
    GAP_REPLAYS,
    PUBSUB_CONNECTIONS,
    PUBSUB_RECONNECTS,
)
from chorus_realtime.transport.pubsub import PubSubConnection, open_pubsub
from chorus_realtime.transport.topology import Topology

__all__ = ["Batch", "Hub", "HubUnavailableError", "Sink"]

logger = logging.getLogger("chorus.realtime.hub")

_TRACEPARENT = b'"traceparent":"'
_TYPE = b'"type":"'
#: Most channels named in one SUBSCRIBE (classic pub/sub; sharded is one per command).
_SUBSCRIBE_CHUNK = 512
#: Longest pause between two attempts to reconnect a node.
_MAX_BACKOFF = 2.0
#: Names tried to find a channel a given cluster node serves (each hits ~1/nodes).
_CHANNEL_SEARCH = 4096
#: Before every stream id: a gap replay of a channel that had no event yet.
FROM_START = "0-0"
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


class _Gap(NamedTuple):
    """What a gap replay read: the events, or None when they cannot all be had, and then
    the stream's newest id (None when unknown), where the subscribers' own resume ends."""

    events: list[OutFrame] | None
    tip: str | None = None


class HubUnavailableError(RuntimeError):
    """Redis did not confirm a subscription in time."""


class _Link:
    """One pub/sub connection to one node, and the channels routed to it."""

    __slots__ = ("channels", "conn", "generation", "lost", "node", "reason", "task")

    def __init__(self, node: str, reason: str) -> None:
        self.node = node
        self.channels: set[str] = set()
        self.conn: PubSubConnection | None = None
        #: Counts the connections made, so callbacks of a replaced one are ignored.
        self.generation = 0
        self.lost = asyncio.Event()
        #: Why the next connection is made (the reconnect metric's label).
        self.reason = reason
        self.task: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.conn is not None and self.conn.open


class Hub:
    """Local subscriptions, the pub/sub connections behind them, and their self-repair."""

    def __init__(
        self,
        *,
        topology: Topology,
        bus: EventBus,
        client_name: str,
        connect_timeout: float = 3.0,
        subscribe_timeout: float = 5.0,
        replay_limit: int = 1000,
    ) -> None:
        self.bus = bus
        self.topology = topology
        self._layout = bus.layout
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
        #: SUBSCRIBEs sent on a channel's connection and not yet acknowledged (a channel
        #: just unsubscribed keeps its count: its acknowledgements are still coming).
        self._pending: dict[str, tuple[_Link, int]] = {}
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
        #: Channels whose gap replay is running (one at a time per channel), and those of
        #: them lost again meanwhile (their replay reads once more before it ends).
        self._replaying: set[str] = set()
        self._relost: set[str] = set()
        #: The connections by node, and the one each channel is routed to.
        self._links: dict[str, _Link] = {}
        self._route: dict[str, _Link] = {}
        self._stopping = False
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._relocating: asyncio.Task[None] | None = None
        self._replays = asyncio.Semaphore(REPLAY_CONCURRENCY)
        #: Messages received on the pub/sub connections so far (the canary's sign of life).
        self.received = 0
        self.rebuilds = 0
        #: Called with (channel, frame) for an access event, before anyone receives it.
        self.on_access: Callable[[str, OutFrame], None] | None = None
        #: Read once: tracing is set up before the hub is built, and never changes.
        self._tracer = tracer()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the connection supervisors (returns at once; see :attr:`connected`)."""
        self._started = True
        if self.topology.sharded:
            self._schedule_relocation()  # read the slot map, move what was routed blindly
        else:
            # One Redis: the connection exists even with no channel (the canary needs it).
            self._link(self.topology.node_for(b""), "start")
        for link in list(self._links.values()):
            self._supervise(link)

    async def stop(self) -> None:
        """Close the connections and fail anyone still waiting for a confirmation."""
        self._stopping = True
        tasks = [link.task for link in self._links.values() if link.task is not None]
        for link in list(self._links.values()):
            self._drop_link(link)
        if self._relocating is not None:
            tasks.append(self._relocating)
        tasks += self._tasks
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(HubUnavailableError("hub stopped"))
        self._waiters.clear()
        await self.topology.close()

    @property
    def connected(self) -> bool:
        """True while every connection is open and every channel is confirmed."""
        if not self._links or not all(link.open for link in self._links.values()):
            return False
        return all(ch in self._confirmed for ch in (*self._sinks, *self._taps))

    def node_connected(self, node: str) -> bool:
        """True while ``node``'s connection is open and its channels are confirmed."""
        link = self._links.get(node)
        return (
            link is not None
            and link.open
            and all(channel in self._confirmed for channel in link.channels)
        )

    @property
    def nodes(self) -> list[str]:
        """The nodes the hub holds (or is making) a connection to."""
        return list(self._links)

    def data_nodes(self) -> list[str]:
        """The nodes serving at least one channel with local subscribers."""
        return sorted({link.node for ch, link in self._route.items() if ch in self._sinks})

    def channel_on(self, base: str, node: str) -> str:
        """A channel named after ``base`` (itself, or ``<base>:<n>``) that ``node`` serves.

        The canary checks each connection through a channel of its own node; on one Redis
        that is always ``base``.
        """
        for n in range(_CHANNEL_SEARCH):
            candidate = base if n == 0 else f"{base}:{n}"
            if self.topology.node_for(self._pubsub_name(candidate)) == node:
                return candidate
        return base

    @property
    def generation(self) -> int:
        """Counts the pub/sub connections made: it changes when any connection is replaced."""
        return self.rebuilds

    def node_generation(self, node: str) -> int:
        """Counts ``node``'s connections made (-1 when the hub holds none to it)."""
        link = self._links.get(node)
        return -1 if link is None else link.generation

    @property
    def channel_count(self) -> int:
        """Channels with local subscribers."""
        return len(self._sinks)

    def subscribers(self, channel: str) -> tuple[Sink, ...]:
        """The local subscribers of ``channel`` (a snapshot)."""
        return self._targets.get(channel, ())

    def node_of(self, channel: str) -> str | None:
        """The node ``channel`` is routed to (None when not subscribed)."""
        link = self._route.get(channel)
        return None if link is None else link.node

    def rebuild(self, reason: str, node: str | None = None) -> None:
        """Drop ``node``'s connection (all, by default) so it is built again (the canary)."""
        for link in list(self._links.values()):
            if node is None or link.node == node:
                logger.warning("rebuilding the pub/sub connection to %s: %s", link.node, reason)
                link.reason = reason
                if link.conn is not None:
                    link.conn.abort()

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(self, channel: str, sink: Sink) -> None:
        """Add ``sink`` to ``channel``; returns once Redis confirmed the subscription."""
        sinks = self._sinks.get(channel)
        if sinks is None:
            self._sinks[channel] = {sink: None}
            self._targets[channel] = (sink,)
            CHANNELS.set(len(self._sinks))
            self._want(channel)
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
        self._last.pop(channel, None)
        self._last_text.pop(channel, None)
        self._noted.pop(channel, None)
        self._held.pop(channel, None)
        self._relost.discard(channel)
        if channel not in self._taps:
            self._unwant(channel)

    def tap(self, channel: str, callback: Callable[[bytes], None]) -> None:
        """Listen to ``channel``'s raw payloads until :meth:`untap` (the canary)."""
        new = channel not in self._taps and channel not in self._sinks
        self._taps[channel] = callback
        if new:
            self._want(channel)

    def untap(self, channel: str) -> None:
        """Stop listening to ``channel``'s raw payloads."""
        if self._taps.pop(channel, None) is not None and channel not in self._sinks:
            self._unwant(channel)

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

    def _pubsub_name(self, channel: str) -> bytes:
        return self._layout.pubsub(channel).encode()

    def _want(self, channel: str) -> None:
        """Route a newly wanted channel to its node and subscribe there."""
        link = self._link(self.topology.node_for(self._pubsub_name(channel)), "start")
        link.channels.add(channel)
        self._route[channel] = link
        self._send_subscribe(channel, link)

    def _unwant(self, channel: str) -> None:
        self._confirmed.discard(channel)
        link = self._route.pop(channel, None)
        if link is None:
            return
        link.channels.discard(channel)
        if link.open:
            assert link.conn is not None
            link.conn.unsubscribe(self._pubsub_name(channel))
        self._prune()

    def _send_subscribe(self, channel: str, link: _Link) -> None:
        self._confirmed.discard(channel)
        if link.open:
            assert link.conn is not None
            pending = self._pending.get(channel)
            count = pending[1] + 1 if pending is not None and pending[0] is link else 1
            self._pending[channel] = (link, count)
            link.conn.subscribe(self._pubsub_name(channel))

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

    def _lose(self, channel: str) -> None:
        """``channel`` is not heard any more: hold its live events until the gap is replayed."""
        self._confirmed.discard(channel)
        self._pending.pop(channel, None)
        if channel in self._sinks:
            self._held.setdefault(channel, [])
            if channel in self._replaying:
                self._relost.add(channel)

    # -- callbacks from the connections ------------------------------------------------------

    def _name(self, raw: bytes) -> str:
        name = self._names.get(raw)
        if name is None:
            name = self._layout.channel_of(raw.decode())
            if len(self._names) > 100_000:
                self._names.clear()
            self._names[raw] = name
        return name

    def _on_ack(self, link: _Link, generation: int, raw: bytes, subscribed: bool) -> None:
        if generation != link.generation:
            return
        channel = self._name(raw)
        if not subscribed:
            if channel in self._confirmed and self._route.get(channel) is link:
                # Nobody asked: the node unsubscribed us, because the slot moved away.
                logger.info("%s left %s (its slot moved)", channel, link.node)
                self._lose(channel)
                self._schedule_relocation()
            return
        pending = self._pending.get(channel)
        if pending is None or pending[0] is not link:
            return  # a connection the channel has left since
        if pending[1] > 1:
            self._pending[channel] = (link, pending[1] - 1)
            return
        del self._pending[channel]
        if self._route.get(channel) is not link:
            return  # unsubscribed meanwhile
        self._confirmed.add(channel)
        if channel not in self._held:
            self._wake(channel)
        elif channel not in self._replaying:  # (a running one reads again: lost meanwhile)
            task = asyncio.create_task(self._replay_gap(channel), name=f"hub-replay:{channel}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_error(self, link: _Link, generation: int, error: str) -> None:
        if generation != link.generation:
            return
        kind, _, rest = error.partition(" ")
        if kind in {"MOVED", "ASK"}:
            # A channel of this slot was subscribed on the wrong node: patch the map and
            # move every channel of the slot routed here to the node named.
            slot, _, where = rest.partition(" ")
            host, _, port = where.rpartition(":")
            if kind == "MOVED" and slot.isdigit() and port.isdigit():
                self.topology.moved(int(slot), host, int(port))
            logger.info("%s answered %s: re-reading the slot map", link.node, error)
            for channel in list(link.channels):
                if str(key_slot(self._pubsub_name(channel))) == slot:
                    self._lose(channel)
            self._schedule_relocation()
            return
        logger.warning("%s refused a subscription (%s): reconnecting", link.node, error)
        link.reason = "error"
        if link.conn is not None:
            link.conn.abort()

    def _on_messages(self, messages: list[tuple[bytes, bytes]]) -> None:
        """The messages of one read, in order: each run of one channel's events goes out at once."""
        self.received += len(messages)
        run: list[OutFrame] = []
        run_channel = ""
        last, last_text = self._last, self._last_text
        tracing = self._tracer
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
            if (
                tracing is not None
                and not frame.access
                and self._deliver_traced(tracing, channel, frame, payload, (run_channel, run))
            ):
                run = []
                continue
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

    def _deliver_traced(
        self,
        tracing: Tracer,
        channel: str,
        frame: OutFrame,
        payload: bytes,
        pending: tuple[str, list[OutFrame]],
    ) -> bool:
        """Deliver a sampled event in its ``deliver`` span, as a batch of its own (after the
        ``pending`` run); False, doing nothing, for an event not sampled."""
        span = self._deliver_span(tracing, channel, frame, payload)
        if span is None:
            return False
        run_channel, run = pending
        if run:
            self._fanout(Batch(run_channel, run), self._targets.get(run_channel, ()))
        with trace.use_span(span):
            self._fanout(Batch(channel, [frame]), self._targets.get(channel, ()))
        # After the flush the fan-out scheduled: the span covers the writes.
        asyncio.get_running_loop().call_soon(span.end)
        return True

    def _access(self, channel: str, frame: OutFrame) -> None:
        # Rare (membership changes): the guard unsubscribes whoever lost access, so they
        # receive neither this event nor, since they are gone, any later one.
        if self.on_access is not None:
            self.on_access(channel, frame)

    def _deliver_span(
        self, tracing: Tracer, channel: str, frame: OutFrame, payload: bytes
    ) -> Span | None:
        """A ``deliver`` span for the event if its envelope names a sampled trace, else None."""
        start = payload.rfind(_TRACEPARENT)
        if start < 0:
            return None
        start += len(_TRACEPARENT)
        traceparent = payload[start : payload.find(b'"', start)].decode("latin-1")
        if not is_sampled(traceparent):
            return None
        parent = context_from_traceparent(traceparent)
        if parent is None:
            return None
        kind = payload.find(_TYPE) + len(_TYPE)
        type_ = payload[kind : payload.find(b'"', kind)].decode("latin-1")
        attributes: dict[str, str | int] = {
            "messaging.system": "redis",
            "messaging.operation.type": "process",
            "messaging.destination.name": channel,
            "chorus.event.type": type_,
            "chorus.realtime.subscribers": len(self._targets.get(channel, ())),
        }
        if frame.id is not None:
            attributes["messaging.message.id"] = frame.id
        return tracing.start_span(
            f"deliver {type_}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )

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

    def _on_lost(self, link: _Link, generation: int, exc: Exception | None) -> None:
        if generation != link.generation:
            return
        for channel in link.channels:
            self._lose(channel)
        link.lost.set()
        if not self._stopping:
            logger.warning("pub/sub connection to %s lost: %s", link.node, exc or "closed")

    # -- connections -------------------------------------------------------------------------

    def _link(self, node: str, reason: str) -> _Link:
        """The connection to ``node``, made (and supervised) if there is none yet."""
        link = self._links.get(node)
        if link is None:
            link = self._links[node] = _Link(node, reason)
            if self._started:
                self._supervise(link)
        return link

    def _supervise(self, link: _Link) -> None:
        if link.task is None:
            link.task = asyncio.create_task(self._run_link(link), name=f"pubsub:{link.node}")

    def _prune(self) -> None:
        """Close connections to cluster nodes that no longer serve any channel of ours."""
        if not self.topology.sharded:
            return
        for link in list(self._links.values()):
            if not link.channels:
                self._drop_link(link)

    def _drop_link(self, link: _Link) -> None:
        """Forget ``link`` and close its connection (its supervisor ends)."""
        if self._links.get(link.node) is link:
            del self._links[link.node]
        if link.task is not None and link.task is not asyncio.current_task():
            link.task.cancel()
        if link.conn is not None:
            link.conn.abort()
            link.conn = None
        self._count_connections()

    def _count_connections(self) -> None:
        PUBSUB_CONNECTIONS.set(sum(1 for link in self._links.values() if link.open))

    async def _connect(self, link: _Link) -> PubSubConnection:
        link.generation += 1
        generation = link.generation
        address = await self.topology.address(link.node)
        return await open_pubsub(
            address,
            client_name=self._client_name,
            connect_timeout=self._connect_timeout,
            on_messages=self._on_messages,
            on_ack=lambda raw, subscribed: self._on_ack(link, generation, raw, subscribed),
            on_lost=lambda exc: self._on_lost(link, generation, exc),
            on_error=lambda error: self._on_error(link, generation, error),
            sharded=self.topology.sharded,
        )

    async def _run_link(self, link: _Link) -> None:
        """Keep ``link`` connected while it carries channels (always, on one Redis)."""
        delay = 0.05
        while not self._stopping and self._links.get(link.node) is link:
            if self.topology.sharded and link.reason != "start":
                # The node may be gone and its slots served elsewhere: look again first.
                await self._relocate()
                if self._links.get(link.node) is not link:
                    return
            try:
                conn = await self._connect(link)
            except Exception as exc:
                logger.warning(
                    "pub/sub connect to %s failed (%s); retrying in %.2fs", link.node, exc, delay
                )
                link.reason = "error"
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            delay = 0.05
            PUBSUB_RECONNECTS.labels(link.reason).inc()
            self.rebuilds += 1
            link.lost.clear()
            link.conn = conn
            self._count_connections()
            for channel in link.channels:
                self._pending[channel] = (link, 1)
            names = [self._pubsub_name(c) for c in link.channels]
            for start in range(0, len(names), _SUBSCRIBE_CHUNK):
                conn.subscribe(*names[start : start + _SUBSCRIBE_CHUNK])
            await link.lost.wait()
            link.conn = None
            self._count_connections()
            if link.reason != "canary":
                link.reason = "error"

    def _schedule_relocation(self) -> None:
        if self._relocating is None or self._relocating.done():
            self._relocating = asyncio.create_task(self._relocate_soon(), name="hub-relocate")

    async def _relocate_soon(self) -> None:
        delay = 0.05
        while not self._stopping:
            if await self._relocate():
                return
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
            delay = min(delay * 2, _MAX_BACKOFF)

    async def _relocate(self) -> bool:
        """Re-read where channels live and move each to its node; False if the map could
        not be read."""
        try:
            await self.topology.refresh()
        except Exception as exc:
            logger.warning("cannot read where channels live: %s", exc)
            return False
        for channel, link in list(self._route.items()):
            node = self.topology.node_for(self._pubsub_name(channel))
            if node == link.node and (channel in self._confirmed or channel in self._pending):
                continue
            if node != link.node:
                link.channels.discard(channel)
                if link.open:
                    assert link.conn is not None
                    link.conn.unsubscribe(self._pubsub_name(channel))
                CHANNEL_MOVES.inc()
                self._lose(channel)
            target = self._link(node, "moved")
            target.channels.add(channel)
            self._route[channel] = target
            self._send_subscribe(channel, target)
        self._prune()
        return True

    async def _replay_gap(self, channel: str) -> None:
        """After a rebuild or a move: deliver what ``channel`` got while unheard, then the
        held frames.

        One replay runs per channel: if the channel is lost again while it reads, it reads
        once more from where it got to (once resubscribed) before the held frames go out,
        so a second gap is neither skipped nor reported twice.
        """
        self._replaying.add(channel)
        try:
            while True:
                self._relost.discard(channel)
                noted = self._noted.get(channel)
                # No position at all: nothing was delivered, and the stream was empty when
                # the channel was subscribed (its subscribers know where it stood): all new.
                since = self._last_text.get(channel) or (noted[1] if noted else FROM_START)
                gap = await self._read_gap(channel, since)

                if channel not in self._held:  # its last subscriber left meanwhile
                    if channel in self._confirmed:
                        self._wake(channel)  # whoever subscribed since
                    return
                final = channel not in self._relost
                held = self._held.pop(channel) if final else []
                if gap.events is None:
                    self._interrupt(channel, gap.tip, held)
                else:
                    GAP_REPLAYS.inc(len(gap.events))
                    self._deliver_replayed(channel, [*gap.events, *held])
                if final:
                    self._wake(channel)
                    return
                if channel not in self._confirmed:
                    return  # its acknowledgement starts the next read
        finally:
            self._replaying.discard(channel)

    def _deliver_replayed(self, channel: str, frames: list[OutFrame]) -> None:
        """Hand on the frames not dispatched yet, an access event ending the run before it."""
        fresh = [frame for frame in frames if self._fresh(channel, frame)]
        start = 0
        for index, frame in enumerate(fresh):
            if frame.access:
                if index > start:
                    self._fanout(Batch(channel, fresh[start:index]), self._targets.get(channel, ()))
                self._access(channel, frame)
                start = index
        if start < len(fresh):
            self._fanout(Batch(channel, fresh[start:]), self._targets.get(channel, ()))

    def _interrupt(self, channel: str, tip: str | None, held: list[OutFrame]) -> None:
        """Tell ``channel``'s subscribers to resume on their own, and move the channel's
        position past the gap: what they resume is theirs, and a later rebuild replays only
        what comes after it (it would otherwise find the same gap and interrupt again)."""
        for sink in self._targets.get(channel, ()):
            sink.interrupted()
        newest = [(frame.key, frame.id) for frame in held if frame.key is not None]
        if tip is not None:
            newest.append((parse_stream_id(tip), tip))
        if newest:
            key, stream_id = max(newest)
            previous = self._last.get(channel)
            if previous is None or key > previous:
                self._last[channel] = key
                assert stream_id is not None
                self._last_text[channel] = stream_id
                self._noted.pop(channel, None)

    async def _read_gap(self, channel: str, since: str) -> _Gap:
        """The events published after ``since``, or why they cannot all be had."""
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
                    return _Gap(None, await self._tip(channel))
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, 2.0)
                continue
            # From the start, no entry is the offset's own: recovered means nothing there.
            if (not history.recovered and since != FROM_START) or history.more:
                logger.warning(
                    "the gap of %s is not all in history; its subscribers resume themselves",
                    channel,
                )
                return _Gap(None, await self._tip(channel))
            return _Gap([OutFrame.event(event) for event in history.events])
        return _Gap(None)

    async def _tip(self, channel: str) -> str | None:
        """The channel's newest stream id, or None when Redis cannot tell."""
        try:
            async with self._replays:
                return (await self.bus.position(channel)).last_id
        except Exception as exc:
            logger.warning("cannot read where %s stands: %s", channel, exc)
            return None
