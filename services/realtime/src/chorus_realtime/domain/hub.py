"""The fan-out hub: the replica's pub/sub connections, shared by every local client.

- The hub SUBSCRIBEs to a channel when its first local subscriber arrives and
  UNSUBSCRIBEs after the last leaves. :meth:`Hub.subscribe` returns only once Redis has
  confirmed the *latest* SUBSCRIBE for the channel (a subscribe racing an unsubscribe
  counts acknowledgements), so a caller that reads history afterwards cannot miss an
  event between the two.
- Each published envelope is parsed once (:class:`OutFrame`) and the same frame object is
  appended to every subscriber's send queue from ``data_received``.
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
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Protocol

from redis.crc import key_slot

from chorus_common.events import EventBus, parse_stream_id
from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.metrics import (
    CHANNEL_MOVES,
    CHANNELS,
    GAP_REPLAYS,
    PUBSUB_CONNECTIONS,
    PUBSUB_RECONNECTS,
)
from chorus_realtime.transport.pubsub import PubSubConnection, open_pubsub
from chorus_realtime.transport.topology import Topology

__all__ = ["Hub", "HubUnavailableError", "Sink"]

logger = logging.getLogger("chorus.realtime.hub")

#: Most channels named in one SUBSCRIBE (classic pub/sub; sharded is one per command).
_SUBSCRIBE_CHUNK = 512
#: Longest pause between two attempts to reconnect a node.
_MAX_BACKOFF = 2.0
#: Names tried to find a channel a given cluster node serves (each hits ~1/nodes).
_CHANNEL_SEARCH = 4096
#: Before every stream id: a gap replay of a channel that had no event yet.
FROM_START = "0-0"


class Sink(Protocol):
    """A local subscriber: receives frames synchronously and must never block."""

    def deliver(self, frame: OutFrame) -> None:
        """Take ``frame`` (queue it); called from the pub/sub reader."""


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
        #: Newest stream id dispatched (or known to subscribers) per channel.
        self._last: dict[str, tuple[int, int]] = {}
        self._last_text: dict[str, str] = {}
        #: Channels replaying a gap after a rebuild: live frames held here meanwhile.
        self._held: dict[str, list[OutFrame]] = {}
        #: The connections by node, and the one each channel is routed to.
        self._links: dict[str, _Link] = {}
        self._route: dict[str, _Link] = {}
        self._stopping = False
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._relocating: asyncio.Task[None] | None = None
        self.rebuilds = 0

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
    def channel_count(self) -> int:
        """Channels with local subscribers."""
        return len(self._sinks)

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
        self._held.pop(channel, None)
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
        """A subscriber knows ``channel`` up to ``stream_id``: replay gaps from there on."""
        if stream_id is None or channel not in self._sinks:
            return
        key = parse_stream_id(stream_id)
        if key > self._last.get(channel, (0, 0)):
            self._last[channel] = key
            self._last_text[channel] = stream_id

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
        if channel in self._held:
            task = asyncio.create_task(self._replay_gap(channel), name=f"hub-replay:{channel}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._wake(channel)

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
        for sink in targets:
            sink.deliver(frame)

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
            on_message=self._on_message,
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
        """After a rebuild: deliver what ``channel`` got while unheard, then the held frames."""
        # No position: nothing was ever delivered, and the stream was empty when the
        # channel was subscribed (its subscribers know where it stood): all of it is new.
        since = self._last_text.get(channel, FROM_START)
        replayed: list[OutFrame] = []
        try:
            history = await self.bus.history(channel, since, limit=self._replay_limit)
            replayed = [OutFrame.event(e) for e in history.events]
        except Exception:
            logger.exception("could not replay the gap of %s", channel)
        held = self._held.pop(channel, [])
        targets = self._targets.get(channel)
        if targets is not None:
            GAP_REPLAYS.inc(len(replayed))
            for frame in (*replayed, *held):
                self._dispatch(channel, frame, targets)
        self._wake(channel)
