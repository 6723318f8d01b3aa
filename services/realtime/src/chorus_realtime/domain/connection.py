"""One client connection, whatever its transport: channels, resume, and its send queue.

Subscribing follows the only order that can neither lose nor repeat an event:

1. register with the hub and wait until Redis confirmed the SUBSCRIBE — from then on,
   every new event reaches this connection live, and is *held* for the moment;
2. read the stream after the client's offset (``since``) — everything older than the
   confirmation is there;
3. queue ``subscribed`` (saying ``recovered``), the replayed events, then the held live
   events; the writer drops any event whose stream id is not above the last one it wrote
   for that channel, so the overlap between 2 and 3 is sent once.

A room's door is checked between 1 and 2 too (``admit``): whatever takes access away after
that check reaches this connection live, as an access event the hub hands to the room
guard, which calls :meth:`Connection.revoke` — before this connection gets that event or
anything after it. A subscription revoked while it replays is abandoned.

The replay counts against the send queue's bounds like live events: what a resume would
replay is measured in Redis first (``EventBus.history(max_bytes=…)``), and a backlog that
would not fit the room left in the queue is not read at all — the client gets
``recovered: false`` and refetches history over HTTP, page by page. So a client that
resumes from an old id and never reads costs a replica no more than a full send queue.

Live events take the shortest path there is: when nothing is queued for the client and
its socket takes data, :meth:`Connection.deliver` writes them at once through
:attr:`Connection.direct` (the WebSocket writer's), in the bytes the hub built once for
every socket. Anything else — a subscription still replaying, a client reading slowly, a
transport without a direct path (SSE) — goes through the bounded send queue, which the
transport drains: :meth:`Connection.take_all` (WebSocket) or :meth:`Connection.frames`
(SSE).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, KeysView
from dataclasses import dataclass
from itertools import count
from typing import Final, Literal

from chorus_common.events import EventBus, InvalidStreamIdError, parse_stream_id
from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.domain.hub import Batch, Hub
from chorus_realtime.domain.outbox import Outbox
from chorus_realtime.metrics import DELIVERIES, RECOVERIES, SLOW_CLIENT_DISCONNECTS

__all__ = ["CloseCode", "Connection", "Resume", "RevokedError", "Transport"]

logger = logging.getLogger("chorus.realtime.connection")

Transport = Literal["ws", "sse"]
_ids = count(1)
#: Room kept in the send queue for the ``subscribed`` frame ahead of a replay.
_SUBSCRIBED_ROOM: Final = 1024


class CloseCode:
    """WebSocket close codes the service uses (SSE streams simply end)."""

    NORMAL: Final = 1000
    POLICY: Final = 1008
    TOO_BIG: Final = 1009
    INTERNAL: Final = 1011
    RESTART: Final = 1012
    TRY_AGAIN: Final = 1013
    #: The client read too slowly: its send queue overflowed (application range).
    SLOW_CONSUMER: Final = 4008
    #: The connection's token expired or was revoked: log in again, then reconnect.
    UNAUTHORIZED: Final = 4401
    #: The room refused the user, or took their access away: do not reconnect to it.
    FORBIDDEN: Final = 4403


class RevokedError(Exception):
    """Access to the channel was taken away while it was being subscribed."""


@dataclass(frozen=True, slots=True)
class Resume:
    """How a subscription started."""

    channel: str
    recovering: bool
    recovered: bool
    replayed: int
    position: str | None
    epoch: str | None


class _Cursor:
    """What a connection knows of one of its channels."""

    __slots__ = ("held", "last_id", "last_key")

    def __init__(self) -> None:
        #: Live frames held while the subscription replays (step 1 → 3 above).
        self.held: list[OutFrame] | None = []
        #: The last stream id written (what the client knows), and its parsed key.
        self.last_key: tuple[int, int] | None = None
        self.last_id: str | None = None


class Connection:
    """A client's subscriptions and send queue; a :class:`Sink` of the hub."""

    __slots__ = (
        "_abort",
        "_channels",
        "_holding",
        "_left",
        "bus",
        "close_code",
        "close_reason",
        "direct",
        "expires_at",
        "hub",
        "id",
        "on_revoke",
        "outbox",
        "replay_max",
        "token_version",
        "transport",
        "user",
    )

    def __init__(
        self,
        *,
        user: str,
        transport: Transport,
        hub: Hub,
        bus: EventBus,
        max_queue_frames: int,
        max_queue_bytes: int,
        replay_max: int,
        abort: Callable[[], None] | None = None,
        expires_at: float = math.inf,
        token_version: int = 1,
    ) -> None:
        self.id = next(_ids)
        self.user = user
        #: When the connection's token expires (Unix time), and the version it carries.
        self.expires_at = expires_at
        self.token_version = token_version
        self.transport: Transport = transport
        self.hub = hub
        self.bus = bus
        self.replay_max = replay_max
        self.outbox = Outbox(max_frames=max_queue_frames, max_bytes=max_queue_bytes)
        self._abort = abort
        self._channels: dict[str, _Cursor] = {}
        #: Channels still replaying (their live frames are held).
        self._holding = 0
        #: Last ids of channels left since (for the ``reconnect`` frame).
        self._left: dict[str, str] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        #: Told (channel, reason) after :meth:`revoke` (the session leaves or closes).
        self.on_revoke: Callable[[str, str], None] | None = None
        #: Writes WebSocket bytes to the client now and says True, or says False when its
        #: socket is not taking data (set by the WebSocket writer; None once closing).
        self.direct: Callable[[bytes], bool] | None = None

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.transport} user={self.user}>"

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self.close_code is not None

    @property
    def channels(self) -> KeysView[str]:
        """The channels subscribed, in subscription order."""
        return self._channels.keys()

    @property
    def last_ids(self) -> dict[str, str]:
        """Per channel, the last stream id written: where the client would resume."""
        ids = dict(self._left) if self._left else {}
        for channel, cursor in self._channels.items():
            if cursor.last_id is not None:
                ids[channel] = cursor.last_id
        return ids

    # -- receiving from the hub --------------------------------------------------------------

    def deliver(self, batch: Batch) -> bool:
        """Live events from the hub (never blocks); True when all were written at once.

        Written at once only if that keeps the order and sends each event once: nothing is
        queued or replaying, and the batch is newer than what the client got on its channel
        (the hub's batches ascend, so its first stream id says it). Otherwise queued, and
        :meth:`take_all` counts them when they leave.
        """
        direct = self.direct
        if direct is not None and not self._holding and not self.outbox:
            cursor = self._channels.get(batch.channel)
            if cursor is not None:
                first, known = batch.first_key, cursor.last_key
                if (first is None or known is None or first > known) and direct(batch.wire):
                    if batch.last_key is not None:
                        cursor.last_key, cursor.last_id = batch.last_key, batch.last_id
                    return True
        for frame in batch.frames:
            if not self._queue(frame):
                break
        return False

    def _queue(self, frame: OutFrame) -> bool:
        """Hold (while its channel replays) or queue a live frame; False on overflow."""
        if self._holding:
            cursor = self._channels.get(frame.channel)  # type: ignore[arg-type]
            held = None if cursor is None else cursor.held
            if held is not None:
                held.append(frame)
                if len(held) > self.outbox.max_frames:
                    self._overflow()
                    return False
                return True
        if not self.outbox.put(frame):
            self._overflow()
            return False
        return True

    def interrupted(self) -> None:
        """The hub lost events of a channel of ours (a pub/sub reconnect whose gap it could
        not replay): close, so that the client resumes from its own last id (1013)."""
        self.close(CloseCode.TRY_AGAIN, "events missed while resubscribing; resume")

    def send(self, frame: OutFrame) -> None:
        """Queue a reply to this client (control frames, errors), outside the bounds."""
        self.outbox.put_unbounded(frame)

    def _overflow(self) -> None:
        if self.closing:
            return
        SLOW_CLIENT_DISCONNECTS.inc()
        logger.info("slow client %s: send queue full, disconnecting", self)
        self.close(CloseCode.SLOW_CONSUMER, "send queue overflow: read faster", flush=False)
        if self._abort is not None:
            # Its socket is not draining, so a close frame would never get out either.
            self._abort()

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        since: str | None,
        *,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> Resume:
        """Subscribe (live first, then the replay); queues ``subscribed`` and the replay.

        ``admit`` runs once the subscription is live and before history is read; it
        raises to refuse. :class:`RevokedError` when access was taken away meanwhile.
        """
        cursor = self._channels[channel] = _Cursor()
        self._holding += 1
        try:
            await self.hub.subscribe(channel, self)
            if admit is not None:
                await admit()
            resume, replay = await self._read_history(cursor, channel, since)
            if self._channels.get(channel) is not cursor:
                raise RevokedError(channel)
        except BaseException:
            if self._channels.get(channel) is cursor:
                self.unsubscribe(channel)
            raise
        self.send(
            OutFrame.control(
                {
                    "type": "subscribed",
                    "channel": channel,
                    "recovering": resume.recovering,
                    "recovered": resume.recovered,
                    "replayed": resume.replayed,
                    "position": resume.position,
                    "epoch": resume.epoch,
                },
                channel=channel,
            )
        )
        for frame in replay:
            if not self.outbox.put(frame):
                self._overflow()
                break
        held, cursor.held = cursor.held or [], None
        self._holding -= 1
        for frame in held:
            if not self.outbox.put(frame):
                self._overflow()
                break
        self.hub.note_position(channel, resume.position)
        return resume

    async def _read_history(
        self, cursor: _Cursor, channel: str, since: str | None
    ) -> tuple[Resume, list[OutFrame]]:
        if since is not None:
            try:
                parse_stream_id(since)
            except InvalidStreamIdError:
                since = None
        if since is None:
            position = await self.bus.position(channel)
            resume = Resume(channel, False, False, 0, position.last_id, position.epoch)
            return resume, []
        outbox = self.outbox
        # One more than REPLAY_MAX is read: a full page of exactly REPLAY_MAX is replayable.
        history = await self.bus.history(
            channel,
            since,
            limit=max(1, min(self.replay_max + 1, outbox.max_frames - len(outbox) - 1)),
            max_bytes=outbox.max_bytes - outbox.size - _SUBSCRIBED_ROOM,
        )
        if not history.recovered or history.more or history.too_large:
            # Part of what the client missed is gone (or too much to replay, or to hold in
            # its send queue): say so and send nothing old; the client refetches state and
            # continues live from here.
            RECOVERIES.labels("too_large" if history.too_large else "miss").inc()
            position = await self.bus.position(channel)
            return Resume(channel, True, False, 0, position.last_id, position.epoch), []
        RECOVERIES.labels("hit").inc()
        cursor.last_key = parse_stream_id(since)
        cursor.last_id = since
        replay = [OutFrame.event(event, live=False) for event in history.events]
        resume = Resume(channel, True, True, len(replay), history.last_id or since, history.epoch)
        return resume, replay

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""
        cursor = self._channels.pop(channel, None)
        if cursor is not None:
            if cursor.held is not None:
                self._holding -= 1
            if cursor.last_id is not None:
                if self._left is None:
                    self._left = {}
                self._left[channel] = cursor.last_id
        self.hub.unsubscribe(channel, self)

    def revoke(self, channel: str, reason: str) -> None:
        """Access to ``channel`` was taken away: stop at once and say so (the hub calls this
        before delivering the event that took it, so nothing after it arrives)."""
        if channel not in self._channels:
            return
        self.unsubscribe(channel)
        self.send(
            OutFrame.control(
                {"type": "unsubscribed", "channel": channel, "reason": reason}, channel=channel
            )
        )
        if self.on_revoke is not None:
            self.on_revoke(channel, reason)

    def unsubscribe_all(self) -> None:
        """Leave every channel (the connection is going away)."""
        for channel in list(self.channels):
            self.unsubscribe(channel)

    # -- writing -----------------------------------------------------------------------------

    def take_all(self) -> list[OutFrame]:
        """Every frame to write now, in order; taking them counts them as delivered.

        Each event is written once: a frame whose stream id is not above the last one
        written for its channel (the overlap of a replay and live events) is skipped.
        The loop is inlined on purpose: it runs once per delivery (a helper call per frame
        cost 2-7% of the fan-out rate in ``bench/realtime_fanout.py``).
        """
        frames = self.outbox.take_all()
        if not frames:
            return frames
        channels = self._channels
        kept: list[OutFrame] = []
        for frame in frames:
            key = frame.key
            if key is not None:
                cursor = channels.get(frame.channel)  # type: ignore[arg-type]
                if cursor is not None:
                    previous = cursor.last_key
                    if previous is not None and key <= previous:
                        continue
                    cursor.last_key = key
                    cursor.last_id = frame.id
            kept.append(frame)
        DELIVERIES.delivered([frame.published_at for frame in kept])
        return kept

    def farewell(self) -> OutFrame | None:
        """The last frame before closing: ``reconnect`` with the positions, when draining."""
        if self.close_code != CloseCode.RESTART:
            return None
        return OutFrame.control(
            {"type": "reconnect", "reason": self.close_reason, "positions": self.last_ids}
        )

    async def frames(self) -> AsyncIterator[OutFrame]:
        """Frames to write, in order, each event once; ends when the connection closes.

        A draining connection ends with a ``reconnect`` frame carrying, per channel, the
        last stream id written — the offset to resume from on another replica.
        """
        while await self.outbox.wait():
            for frame in self.take_all():
                yield frame
        farewell = self.farewell()
        if farewell is not None:
            yield farewell

    def close(self, code: int, reason: str, *, flush: bool = True) -> None:
        """Stop the connection: the writer sends what is queued (if ``flush``), then ends."""
        if self.closing:
            return
        self.close_code = code
        self.close_reason = reason
        self.direct = None  # from now on the writer sends what is queued, then closes
        if not flush:
            self.outbox.clear()
        self.outbox.close()

    def abort(self) -> None:
        """Drop the transport now (a stalled client that would never take a close frame)."""
        if self._abort is not None:
            self._abort()

    def close_reason_with_position(self) -> str:
        """The close reason, plus the last id of the first channel (fits 123 bytes)."""
        if self.close_code != CloseCode.RESTART or not self.channels:
            return self.close_reason[:120]
        last = next(iter(self._channels.values())).last_id
        return f"{self.close_reason};last_id={last}"[:120] if last else self.close_reason[:120]
