"""A WebSocket session: what a client's frames do, and the room membership they imply.

The transport (``routes/ws.py``) reads frames and hands them to :meth:`Session.handle`;
anything that must end the connection raises :class:`CloseConnection` with the code to
close with. Rooms joined — the path's room and any a ``subscribe`` frame adds — count in
presence, and a user's first connection to a room publishes ``join`` (its last,
``leave``), durably, in the same Redis script as the presence change (``presence.py``).

**Who may enter** is the rule of ``chorus_common.rooms``, asked through the room guard
(``access.py``) before and right after subscribing: the path's room refused is close
**4403**, a ``subscribe`` refused is an ``error`` frame ``forbidden`` (the socket stays);
when the rule cannot be checked, 1013 / ``unavailable``. **Writing** — messages, typing,
and with them the ``@assistant`` trigger — goes through one script that applies the same
rule in Redis as it publishes, so someone removed a moment ago cannot post, whatever this
replica has processed. Access taken away inside (the guard revokes the subscription) ends
the socket with 4403 for its own room, or an ``unsubscribed`` frame with the reason for
another.

**People, not numbers.** What the session publishes carries the user's display name
(``data.name``, from the token), and a message in a direct-message room also tells the
other person on their ``user:`` channel (``dm.message``).

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

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.trace import Link, SpanContext, SpanKind, Tracer

from chorus_common.events import (
    EventBus,
    InvalidChannelError,
    room_channel,
    user_channel,
)
from chorus_common.rooms import DirectoryUnavailableError, dm_peer
from chorus_common.trace_context import context_from_traceparent
from chorus_common.tracing import current, tracer
from chorus_realtime.domain.access import ROOM_PREFIX, RoomGuard
from chorus_realtime.domain.assistant import Assistant
from chorus_realtime.domain.connection import CloseCode, Connection, Resume, RevokedError
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
from chorus_realtime.metrics import MESSAGES_IN, REJECTED, ROOM_REFUSALS

__all__ = ["CloseConnection", "Session", "SessionLimits"]

logger = logging.getLogger("chorus.realtime.session")

#: Characters of a direct message repeated in the receiver's ``dm.message`` notification.
DM_PREVIEW_CHARS: Final = 140
#: What a refused room is told (the same whether it is private, deleted or a stranger's DM).
FORBIDDEN_MESSAGE: Final = "you may not enter this room"
UNAVAILABLE_MESSAGE: Final = "room access cannot be checked right now; retry"
_REVOKED_REASONS: Final = {
    "removed": "removed from the room",
    "left": "you left the room",
    "private": "the room became private",
    "deleted": "the room was deleted",
    "recheck": "access to the room was withdrawn",
    "unavailable": "room access cannot be checked; retry",
}


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
        "_tasks",
        "assistant",
        "bus",
        "connection",
        "guard",
        "limits",
        "name",
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
        guard: RoomGuard,
        assistant: Assistant | None,
        limits: SessionLimits,
        name: str | None = None,
        quotas: Quotas | None = None,
        upgrade: SpanContext | None = None,
    ) -> None:
        self.connection = connection
        self.user = connection.user
        self.name = name
        self.room_channel = room_channel(room)
        self.bus = bus
        self.presence = presence
        self.guard = guard
        self.assistant = assistant
        self.limits = limits
        self.quotas = quotas
        #: The trace context of the upgrade request, which messages without one link to.
        self.upgrade = upgrade
        self._bucket = TokenBucket(rate=limits.messages_per_second, burst=limits.burst)
        #: Rooms this session counts in presence (a tuple: it rarely changes).
        self._rooms: tuple[str, ...] = ()
        self._tasks: set[asyncio.Task[None]] = set()
        connection.on_revoke = self._revoked

    async def open(self, since: str | None) -> Resume:
        """Subscribe to the path's room (resuming from ``since``) and join it.

        Refused: close 4403 (1013 when access cannot be checked); a new room over the
        user's quota: close 1008.
        """
        try:
            return await self._subscribe(self.room_channel, since, action="join")
        except FrameError as exc:
            self.connection.send(exc.frame())
            if exc.code == "unavailable":
                raise CloseConnection(CloseCode.TRY_AGAIN, UNAVAILABLE_MESSAGE) from None
            if exc.code == "forbidden":
                raise CloseConnection(CloseCode.FORBIDDEN, FORBIDDEN_MESSAGE) from None
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
                await self._typing(self._room_for(channel))
            case Ping():
                MESSAGES_IN.labels("ping").inc()
                self.connection.send(OutFrame.control({"type": "pong"}))
            case Subscribe(channel=channel, since=since):
                MESSAGES_IN.labels("subscribe").inc()
                await self._subscribe(self._allowed(channel), since, action="subscribe")
            case Unsubscribe(channel=channel):
                MESSAGES_IN.labels("unsubscribe").inc()
                await self._unsubscribe(channel)

    def _room_for(self, channel: str | None) -> str:
        if channel is None:
            channel = self.room_channel
        if channel not in self._rooms:
            raise FrameError("not_subscribed", f"subscribe to {channel} before writing to it")
        return channel

    def _allowed(self, channel: str) -> str:
        """A room (the guard decides which), or the user's own channel."""
        try:
            if channel.startswith(ROOM_PREFIX):
                return room_channel(channel.removeprefix(ROOM_PREFIX))
            if channel == user_channel(self.user):
                return channel
        except InvalidChannelError as exc:
            raise FrameError("invalid_channel", str(exc)) from exc
        raise FrameError("forbidden_channel", "only rooms and your own user channel")

    def _person(self, **data: Any) -> dict[str, Any]:
        """``data`` with the user's display name, when the token carries one."""
        if self.name is not None:
            data["name"] = self.name
        return data

    async def _publish(
        self, channel: str, type_: str, data: dict[str, Any], *, durable: bool, action: str
    ) -> str:
        """Publish the user's event if the rule lets them (one script); its stream id."""
        room = channel.removeprefix(ROOM_PREFIX)
        try:
            published = await self.guard.directory.publish(
                self.bus, room, user=self.user, type_=type_, data=data, durable=durable
            )
        except DirectoryUnavailableError:
            ROOM_REFUSALS.labels(action, "unavailable").inc()
            raise FrameError("unavailable", UNAVAILABLE_MESSAGE, channel=channel) from None
        if published is None:
            ROOM_REFUSALS.labels(action, "forbidden").inc()
            raise FrameError("forbidden", FORBIDDEN_MESSAGE, channel=channel)
        return published.id

    async def _typing(self, channel: str) -> None:
        await self._publish(
            channel, "typing", self._person(user_id=self.user), durable=False, action="typing"
        )

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
        message_id = await self._publish(
            channel, "message", self._person(message=text), durable=True, action="message"
        )
        if ref is not None:
            self.connection.send(
                OutFrame.control({"type": "ack", "ref": ref, "id": message_id}, channel=channel)
            )
        room = channel.removeprefix(ROOM_PREFIX)
        peer = dm_peer(room, self.user)
        if peer is not None:
            await self._tell_peer(peer, room, message_id, text)
        if self.assistant is not None:
            prompt = self.assistant.prompt(text)
            if prompt is not None:
                asked = await self.assistant.ask(
                    room=room, message_id=message_id, prompt=prompt, user_id=self.user
                )
                if asked is None:
                    REJECTED.labels("assistant_busy").inc()
                    raise FrameError(
                        "assistant_busy",
                        f"you have {self.assistant.max_pending} questions waiting for the "
                        "assistant; ask again once one is answered",
                        id=message_id,
                        **details,
                    )

    async def _tell_peer(self, peer: str, room: str, message_id: str, text: str) -> None:
        """``dm.message`` on the other person's channel (unread counts, a notification)."""
        try:
            await self.bus.publish(
                user_channel(peer),
                "dm.message",
                self._person(
                    room=room,
                    message_id=message_id,
                    user_id=self.user,
                    preview=text[:DM_PREVIEW_CHARS],
                ),
                sender=self.user,
            )
        except InvalidChannelError:
            logger.warning("a direct-message room with an odd peer: %s", room)

    async def _subscribe(self, channel: str, since: str | None, *, action: str) -> Resume:
        if channel in self.connection.channels:
            raise FrameError("already_subscribed", f"already subscribed to {channel}")
        if len(self.connection.channels) >= self.limits.max_channels:
            raise FrameError("too_many_channels", "unsubscribe from a channel first")
        if not channel.startswith(ROOM_PREFIX):
            return await self.connection.subscribe(channel, since)
        room = channel.removeprefix(ROOM_PREFIX)

        async def admit() -> None:
            await self._check(room, channel, action)

        # Checked before subscribing (an outsider costs no subscription, nor quota) and once
        # the subscription is live, before history is read: nothing can slip in between.
        await admit()
        if self.quotas is not None:
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
        try:
            resume = await self.connection.subscribe(channel, since, admit=admit)
        except RevokedError:
            raise FrameError("forbidden", FORBIDDEN_MESSAGE, channel=channel) from None
        self._rooms = (*self._rooms, channel)
        await self.presence.join(channel, self.user, self.name)
        return resume

    async def _check(self, room: str, channel: str, action: str) -> None:
        try:
            access = await self.guard.check(room, self.user, action=action)
        except DirectoryUnavailableError:
            raise FrameError("unavailable", UNAVAILABLE_MESSAGE, channel=channel) from None
        if not access.allowed:
            raise FrameError("forbidden", FORBIDDEN_MESSAGE, channel=channel)

    async def _unsubscribe(self, channel: str) -> None:
        if channel not in self.connection.channels:
            raise FrameError("not_subscribed", f"not subscribed to {channel}")
        self.connection.unsubscribe(channel)
        self.connection.send(OutFrame.control({"type": "unsubscribed", "channel": channel}))
        if channel in self._rooms:
            await self._leave(channel)

    def _revoked(self, channel: str, reason: str) -> None:
        """Access to ``channel`` was taken away (the connection already stopped it)."""
        if channel == self.room_channel:
            code = CloseCode.TRY_AGAIN if reason == "unavailable" else CloseCode.FORBIDDEN
            self.connection.close(code, _REVOKED_REASONS.get(reason, "forbidden"))
        if channel in self._rooms:
            task = asyncio.get_running_loop().create_task(self._leave_quietly(channel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _leave(self, channel: str) -> None:
        if channel not in self._rooms:
            return
        self._rooms = tuple(room for room in self._rooms if room != channel)
        await self.presence.leave(channel, self.user, self.name)

    async def _leave_quietly(self, channel: str) -> None:
        try:
            await self._leave(channel)
        except Exception as exc:
            logger.warning("could not record leaving %s: %s", channel, exc)

    async def close(self) -> None:
        """Leave every room (the connection is gone); Redis errors are logged, not raised."""
        self.connection.unsubscribe_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._rooms:
            await self._leave_quietly(channel)
