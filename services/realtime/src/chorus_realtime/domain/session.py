"""A WebSocket session: what a client's frames do, and the room membership they imply.

The transport (``routes/ws.py``) reads frames and hands them to :meth:`Session.handle`;
anything that must end the connection raises :class:`CloseConnection` with the code to
close with. Rooms joined — the path's room and any a ``subscribe`` frame adds — count in
presence, and a user's first connection to a room publishes ``join`` (its last,
``leave``), durably, in the same Redis script as the presence change (``presence.py``).

What a user sends is charged to their quotas (``quotas.py``) before anything is stored:
the bytes of each message, and each room that did not exist yet. An ``@assistant``
question also needs a free place among the user's pending questions (``assistant.py``).

With tracing on, each ``message`` frame is a server span ``receive message``: the child
of the frame's ``traceparent`` when it has one, else the root of a new trace linked to
the ``traceparent`` the WebSocket upgrade request carried (a socket lives for hours; its
messages are operations of their own). Publishing the message and enqueueing the
assistant's answer happen inside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from opentelemetry.trace import Link, SpanContext, SpanKind, Tracer

from chorus_common.events import (
    EventBus,
    InvalidChannelError,
    room_channel,
    user_channel,
)
from chorus_common.trace_context import context_from_traceparent
from chorus_common.tracing import current, tracer
from chorus_realtime.domain.assistant import Assistant
from chorus_realtime.domain.connection import CloseCode, Connection, Resume
from chorus_realtime.domain.frames import (
    FrameError,
    OutFrame,
    Ping,
    SendMessage,
    Subscribe,
    Typing,
    Unsubscribe,
    error_frame,
    parse_client_frame,
)
from chorus_realtime.domain.presence import Presence
from chorus_realtime.domain.quotas import QuotaExceeded, Quotas
from chorus_realtime.domain.ratelimit import TokenBucket
from chorus_realtime.metrics import MESSAGES_IN, REJECTED

__all__ = ["CloseConnection", "Session", "SessionLimits"]

logger = logging.getLogger("chorus.realtime.session")

ROOM_PREFIX = "room:"


class CloseConnection(Exception):
    """End the connection with ``code`` (after flushing what is queued)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-connection limits (from settings)."""

    max_message_chars: int
    messages_per_second: float
    burst: int
    max_channels: int


class Session:
    """One WebSocket client in its rooms."""

    __slots__ = (
        "_bucket",
        "_rooms",
        "assistant",
        "bus",
        "connection",
        "limits",
        "presence",
        "quotas",
        "room_channel",
        "upgrade",
        "user",
    )

    def __init__(
        self,
        *,
        connection: Connection,
        room: str,
        bus: EventBus,
        presence: Presence,
        assistant: Assistant | None,
        limits: SessionLimits,
        quotas: Quotas | None = None,
        upgrade: SpanContext | None = None,
    ) -> None:
        self.connection = connection
        self.user = connection.user
        self.room_channel = room_channel(room)
        self.bus = bus
        self.presence = presence
        self.assistant = assistant
        self.limits = limits
        self.quotas = quotas
        #: The trace context of the upgrade request, which messages without one link to.
        self.upgrade = upgrade
        self._bucket = TokenBucket(rate=limits.messages_per_second, burst=limits.burst)
        #: Rooms this session counts in presence (a tuple: it rarely changes).
        self._rooms: tuple[str, ...] = ()

    async def open(self, since: str | None) -> Resume:
        """Subscribe to the path's room (resuming from ``since``) and join it."""
        try:
            return await self._subscribe(self.room_channel, since)
        except FrameError as exc:
            # The room itself cannot be entered (a new room over the user's quota).
            self.connection.send(exc.frame())
            raise CloseConnection(CloseCode.POLICY, exc.message[:120]) from None

    async def handle(self, raw: str) -> None:
        """Act on one client frame."""
        if len(raw) > self.limits.max_message_chars:
            REJECTED.labels("too_big").inc()
            raise CloseConnection(CloseCode.TOO_BIG, "frame too large")
        if not self._bucket.take():
            REJECTED.labels("flood").inc()
            self.connection.send(
                error_frame("rate_limited", "too many frames; slow down", channel=None)
            )
            raise CloseConnection(CloseCode.POLICY, "rate limit exceeded")
        try:
            frame = parse_client_frame(raw)
        except FrameError as exc:
            MESSAGES_IN.labels("invalid").inc()
            self.connection.send(exc.frame())
            return
        try:
            await self._dispatch(frame)
        except FrameError as exc:
            self.connection.send(exc.frame())

    async def _dispatch(self, frame: object) -> None:
        match frame:
            case SendMessage(text=text, channel=channel, ref=ref, traceparent=traceparent):
                MESSAGES_IN.labels("message").inc()
                tracing = tracer()
                if tracing is None:
                    await self._say(text, self._room_for(channel), ref)
                else:
                    await self._say_traced(tracing, text, channel, ref, traceparent)
            case Typing(channel=channel):
                MESSAGES_IN.labels("typing").inc()
                await self.bus.publish_ephemeral(
                    self._room_for(channel), "typing", {"user_id": self.user}, sender=self.user
                )
            case Ping():
                MESSAGES_IN.labels("ping").inc()
                self.connection.send(OutFrame.control({"type": "pong"}))
            case Subscribe(channel=channel, since=since):
                MESSAGES_IN.labels("subscribe").inc()
                await self._subscribe(self._allowed(channel), since)
            case Unsubscribe(channel=channel):
                MESSAGES_IN.labels("unsubscribe").inc()
                await self._unsubscribe(channel)

    def _room_for(self, channel: str | None) -> str:
        if channel is None:
            return self.room_channel
        if channel not in self._rooms:
            raise FrameError("not_subscribed", f"subscribe to {channel} before writing to it")
        return channel

    def _allowed(self, channel: str) -> str:
        """Rooms are open to any signed-in user; a user channel only to its user."""
        try:
            if channel.startswith(ROOM_PREFIX):
                return room_channel(channel.removeprefix(ROOM_PREFIX))
            if channel == user_channel(self.user):
                return channel
        except InvalidChannelError as exc:
            raise FrameError("invalid_channel", str(exc)) from exc
        raise FrameError("forbidden_channel", "only rooms and your own user channel")

    async def _say_traced(
        self,
        tracing: Tracer,
        text: str,
        channel: str | None,
        ref: str | None,
        traceparent: str | None,
    ) -> None:
        parent = context_from_traceparent(traceparent)
        links = [Link(self.upgrade)] if parent is None and self.upgrade is not None else None
        span = tracing.start_span(
            "receive message",
            context=parent,
            kind=SpanKind.SERVER,
            links=links,
            attributes={
                "messaging.system": "websocket",
                "messaging.operation.type": "receive",
                "messaging.destination.name": channel or self.room_channel,
                "enduser.id": self.user,
            },
        )
        with current(span):
            await self._say(text, self._room_for(channel), ref)

    async def _say(self, text: str, channel: str, ref: str | None) -> None:
        details = {"ref": ref} if ref is not None else {}
        if self.quotas is not None:
            try:
                await self.quotas.charge_bytes(self.user, len(text.encode()))
            except QuotaExceeded as exc:
                REJECTED.labels("user_bytes").inc()
                raise FrameError(
                    "quota_exceeded",
                    f"you are sending too much; retry in {exc.retry_after:g}s",
                    retry_after=exc.retry_after,
                    **details,
                ) from None
        published = await self.bus.publish(channel, "message", {"message": text}, sender=self.user)
        if ref is not None:
            self.connection.send(
                OutFrame.control({"type": "ack", "ref": ref, "id": published.id}, channel=channel)
            )
        if self.assistant is not None:
            prompt = self.assistant.prompt(text)
            if prompt is not None:
                asked = await self.assistant.ask(
                    room=channel.removeprefix(ROOM_PREFIX),
                    message_id=published.id,
                    prompt=prompt,
                    user_id=self.user,
                )
                if asked is None:
                    REJECTED.labels("assistant_busy").inc()
                    raise FrameError(
                        "assistant_busy",
                        f"you have {self.assistant.max_pending} questions waiting for the "
                        "assistant; ask again once one is answered",
                        id=published.id,
                        **details,
                    )

    async def _subscribe(self, channel: str, since: str | None) -> Resume:
        if channel in self.connection.channels:
            raise FrameError("already_subscribed", f"already subscribed to {channel}")
        if len(self.connection.channels) >= self.limits.max_channels:
            raise FrameError("too_many_channels", "unsubscribe from a channel first")
        if self.quotas is not None and channel.startswith(ROOM_PREFIX):
            try:
                await self.quotas.enter_room(self.user, channel)
            except QuotaExceeded as exc:
                REJECTED.labels("user_rooms").inc()
                raise FrameError(
                    "room_quota",
                    f"too many new rooms; retry in {exc.retry_after:g}s",
                    channel=channel,
                    retry_after=exc.retry_after,
                ) from None
        resume = await self.connection.subscribe(channel, since)
        if channel.startswith(ROOM_PREFIX):
            self._rooms = (*self._rooms, channel)
            await self.presence.join(channel, self.user)
        return resume

    async def _unsubscribe(self, channel: str) -> None:
        if channel not in self.connection.channels:
            raise FrameError("not_subscribed", f"not subscribed to {channel}")
        self.connection.unsubscribe(channel)
        self.connection.send(OutFrame.control({"type": "unsubscribed", "channel": channel}))
        if channel in self._rooms:
            await self._leave(channel)

    async def _leave(self, channel: str) -> None:
        self._rooms = tuple(room for room in self._rooms if room != channel)
        await self.presence.leave(channel, self.user)

    async def close(self) -> None:
        """Leave every room (the connection is gone); Redis errors are logged, not raised."""
        self.connection.unsubscribe_all()
        for channel in self._rooms:
            try:
                await self._leave(channel)
            except Exception as exc:
                logger.warning("could not record leaving %s: %s", channel, exc)
