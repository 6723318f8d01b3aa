"""Events: the envelope, channel names, the atomic publish, and history from an offset.

This module is the one way anything is published in Chorus (``docs/design.md``):

- every event is the JSON envelope ``{"id", "channel", "type", "data", "ts", "from"}``,
  plus ``traceparent`` (W3C) when it was published inside a traced operation — always
  the envelope's last key, so a subscriber finds it without parsing the event again;
- channels are ``room:<name>`` and ``user:<id>``;
- a durable publish is one Lua script: ``XADD chorus:stream:<channel> MAXLEN ~ <history>``
  then ``PUBLISH chorus:pub:<channel>`` with the envelope carrying the new stream id — so a
  subscriber never sees an event that history lacks, and ids increase in publish order;
- the script trims the stream to ``HISTORY_SIZE`` and renews its ``HISTORY_TTL`` on every
  publish, so every publisher must use the same two values: a bus is built from
  :class:`~chorus_common.settings.EventHistorySettings` (:meth:`EventBus.from_settings`),
  never with defaults of its own;
- the stream id is the offset a client resumes from; ``chorus:epoch:<channel>`` holds the
  first id of the stream's current incarnation, so a reset stream is detected. Resuming
  checks that the client's offset is still in the stream: a trimmed offset, or one from
  before a reset, is answered with ``recovered: false``. (Stream ids are milliseconds, so
  a reset stream could only reuse an id if Redis restarted within the same millisecond.)

The envelope is serialised once, by the publisher; the stored entry and the published
message are the same bytes except for the id, which the script splices in.

With tracing on, a durable publish is a producer span ``publish <type>`` and the
envelope's ``traceparent`` names it, so whoever delivers the event (realtime) continues
the publisher's trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from chorus_common.settings import EventHistorySettings
from chorus_common.trace_context import current_traceparent
from chorus_common.tracing import child_tracer

__all__ = [
    "Envelope",
    "EventBus",
    "History",
    "InvalidChannelError",
    "InvalidStreamIdError",
    "Position",
    "Published",
    "parse_stream_id",
    "pubsub_channel",
    "room_channel",
    "stream_key",
    "user_channel",
]

STREAM_PREFIX: Final = "chorus:stream:"
PUBSUB_PREFIX: Final = "chorus:pub:"
EPOCH_PREFIX: Final = "chorus:epoch:"
#: Field of a stream entry that holds the envelope (without its id).
ENTRY_FIELD: Final = b"e"

_ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_USER_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")

# KEYS: stream, epoch. ARGV: pub/sub channel, body (a JSON object without "id"),
# approximate max length, ttl seconds (0 = none). Returns the new stream id.
_PUBLISH_LUA = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[2])
redis.call('SET', KEYS[2], id, 'NX')
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
redis.call('PUBLISH', ARGV[1], '{"id":"' .. id .. '",' .. string.sub(ARGV[2], 2))
return id
"""

# KEYS: stream, epoch. ARGV: offset, most entries, most bytes. Returns {offset found (0|1),
# epoch, entries after the offset, their bytes, the entries — or, over the bytes, the
# last id only}: the size is measured in Redis, so a page too large is never sent.
_HISTORY_LUA = """
local anchor = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1], 'COUNT', 1)
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local epoch = redis.call('GET', KEYS[2])
local size = 0
for i = 1, #entries do
  local fields = entries[i][2]
  for j = 2, #fields, 2 do size = size + #fields[j] end
end
if size > tonumber(ARGV[3]) then
  return {#anchor, epoch, #entries, size, entries[#entries][1]}
end
return {#anchor, epoch, #entries, size, entries}
"""


class InvalidChannelError(ValueError):
    """A room name or user id that cannot form a channel."""


class InvalidStreamIdError(ValueError):
    """A resume offset that is not a Redis stream id (``<ms>-<seq>``)."""


def room_channel(room: str) -> str:
    """``lobby`` → ``room:lobby``; names are 1-64 of ``A-Z a-z 0-9 _ . -``."""
    if not _ROOM_NAME.fullmatch(room):
        msg = "room names are 1-64 characters of letters, digits, '_', '.', '-'"
        raise InvalidChannelError(msg)
    return f"room:{room}"


def user_channel(user_id: int | str) -> str:
    """A user's private notification channel, ``user:<id>``."""
    text = str(user_id)
    if not _USER_ID.fullmatch(text):
        msg = "user ids are 1-64 characters of letters, digits, '_', '-'"
        raise InvalidChannelError(msg)
    return f"user:{text}"


def stream_key(channel: str) -> str:
    """The Redis stream holding ``channel``'s history."""
    return STREAM_PREFIX + channel


def pubsub_channel(channel: str) -> str:
    """The Redis pub/sub channel carrying ``channel``'s live events."""
    return PUBSUB_PREFIX + channel


def parse_stream_id(value: str) -> tuple[int, int]:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``, for ordering; raises on garbage."""
    match = _STREAM_ID.fullmatch(value)
    if match is None:
        msg = f"not a stream id: {value[:40]!r} (expected <milliseconds>-<sequence>)"
        raise InvalidStreamIdError(msg)
    return int(match[1]), int(match[2])


def utc_timestamp() -> str:
    """Now as RFC 3339 UTC with milliseconds, e.g. ``2026-11-28T04:00:00.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Envelope(BaseModel):
    """An event as clients see it. ``id`` is None only for ephemeral events (typing)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    id: str | None
    channel: str
    type: str
    data: dict[str, Any]
    ts: str
    from_: str = Field(alias="from")
    #: The publisher's span (W3C ``traceparent``), when it published inside a trace.
    traceparent: str | None = None

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        """Parse an envelope as published or stored."""
        return cls.model_validate(orjson.loads(raw))

    def to_json(self) -> bytes:
        """The wire form, with ``from`` spelled as on the wire (no null ``traceparent``)."""
        body = self.model_dump(by_alias=True)
        if body["traceparent"] is None:
            del body["traceparent"]
        return orjson.dumps(body)


@dataclass(frozen=True, slots=True)
class Published:
    """A durably published event: its stream id and the exact bytes subscribers got."""

    id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class History:
    """Events after a resume offset, oldest first, as envelope JSON bytes.

    ``recovered`` is False when the offset is no longer in the stream (trimmed away, or
    the stream was reset): the client may have missed events and should refetch state.
    ``more`` says the page was full; ask again from ``last_id``. ``too_large`` says the
    page was over the size asked for: ``events`` is then empty.
    """

    recovered: bool
    events: list[bytes]
    last_id: str | None
    epoch: str | None
    more: bool
    too_large: bool = False


@dataclass(frozen=True, slots=True)
class Position:
    """Where a channel's history stands: its newest stream id and its epoch (None if empty).

    A new subscriber that receives no event can still resume later from ``last_id``.
    """

    last_id: str | None
    epoch: str | None


def _entry_envelope(entry_id: bytes, body: bytes) -> bytes:
    return b'{"id":"' + entry_id + b'",' + body[1:]


def _field(fields: list[bytes]) -> bytes:
    """The envelope in a stream entry's flat ``[field, value, ...]`` list, as Lua returns it."""
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == ENTRY_FIELD:
            return fields[index + 1]
    msg = "a stream entry without its envelope"
    raise ValueError(msg)


class EventBus:
    """Publishes events and reads their history, on one Redis."""

    def __init__(self, redis: Redis, *, history_size: int, history_ttl: int) -> None:
        if history_size < 1:
            msg = "history_size must be at least 1"
            raise ValueError(msg)
        self.redis = redis
        self.history_size = history_size
        self.history_ttl = history_ttl
        self._publish = redis.register_script(_PUBLISH_LUA)
        self._history = redis.register_script(_HISTORY_LUA)

    @classmethod
    def from_settings(cls, redis: Redis, settings: EventHistorySettings) -> EventBus:
        """The bus of a service: ``HISTORY_SIZE`` and ``HISTORY_TTL`` as configured."""
        return cls(redis, history_size=settings.history_size, history_ttl=settings.history_ttl)

    @staticmethod
    def encode(
        channel: str,
        type_: str,
        data: dict[str, Any],
        sender: str,
        traceparent: str | None = None,
    ) -> bytes:
        """The envelope without its id: a JSON object the script completes."""
        envelope = {
            "channel": channel,
            "type": type_,
            "data": data,
            "ts": utc_timestamp(),
            "from": sender,
        }
        if traceparent is not None:
            envelope["traceparent"] = traceparent  # last: see the module's docstring
        return orjson.dumps(envelope)

    async def publish(
        self, channel: str, type_: str, data: dict[str, Any], *, sender: str
    ) -> Published:
        """Append to the channel's history and deliver live, atomically; returns the id."""
        tracing = child_tracer()
        if tracing is None:  # off, or in an unsampled trace: no span, no traceparent
            return await self._publish_body(channel, self.encode(channel, type_, data, sender))
        attributes = {
            "messaging.system": "redis",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": channel,
            "chorus.event.type": type_,
        }
        with tracing.start_as_current_span(
            f"publish {type_}", kind=SpanKind.PRODUCER, attributes=attributes
        ) as span:
            body = self.encode(channel, type_, data, sender, current_traceparent())
            published = await self._publish_body(channel, body)
            span.set_attribute("messaging.message.id", published.id)
            return published

    async def _publish_body(self, channel: str, body: bytes) -> Published:
        raw_id = await self._publish(
            keys=[stream_key(channel), EPOCH_PREFIX + channel],
            args=[pubsub_channel(channel), body, self.history_size, self.history_ttl],
        )
        entry_id = raw_id if isinstance(raw_id, bytes) else str(raw_id).encode()
        return Published(entry_id.decode(), _entry_envelope(entry_id, body))

    async def publish_ephemeral(
        self, channel: str, type_: str, data: dict[str, Any], *, sender: str
    ) -> bytes:
        """Deliver live only (typing indicators): no history, ``id`` is null."""
        payload = b'{"id":null,' + self.encode(channel, type_, data, sender)[1:]
        await self.redis.publish(pubsub_channel(channel), payload)
        return payload

    async def epoch(self, channel: str) -> str | None:
        """The first stream id of the channel's current history, or None if it has none."""
        raw = await self.redis.get(EPOCH_PREFIX + channel)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def position(self, channel: str) -> Position:
        """The channel's newest stream id and epoch, read together."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xrevrange(stream_key(channel), count=1)
            pipe.get(EPOCH_PREFIX + channel)
            newest, epoch = await pipe.execute()
        return Position(
            last_id=newest[0][0].decode() if newest else None,
            epoch=epoch.decode() if isinstance(epoch, bytes) else epoch,
        )

    async def history(
        self, channel: str, since: str, *, limit: int = 1000, max_bytes: int | None = None
    ) -> History:
        """Events published after ``since``, and whether nothing in between was lost.

        The offset's own entry is looked up in the same transaction as the page: if it is
        still in the stream, every later entry is too (trimming removes from the head).
        With ``max_bytes``, a page whose stored events add up to more is not sent at all
        (``too_large``): Redis measures it, so the caller never holds more than it asked.
        """
        parse_stream_id(since)
        key = stream_key(channel)
        if max_bytes is not None:
            return await self._bounded_history(key, channel, since, limit, max_bytes)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xrange(key, min=since, max=since, count=1)
            pipe.xrange(key, min=f"({since}", max="+", count=limit)
            pipe.get(EPOCH_PREFIX + channel)
            anchor, entries, epoch = await pipe.execute()
        events = [_entry_envelope(entry_id, fields[ENTRY_FIELD]) for entry_id, fields in entries]
        return History(
            recovered=bool(anchor),
            events=events,
            last_id=entries[-1][0].decode() if entries else None,
            epoch=epoch.decode() if isinstance(epoch, bytes) else epoch,
            more=len(entries) == limit,
        )

    async def _bounded_history(
        self, key: str, channel: str, since: str, limit: int, max_bytes: int
    ) -> History:
        found, raw_epoch, count, size, page = await self._history(
            keys=[key, EPOCH_PREFIX + channel], args=[since, limit, max(0, max_bytes)]
        )
        epoch = raw_epoch.decode() if isinstance(raw_epoch, bytes) else None
        if size > max_bytes:
            last = page.decode() if isinstance(page, bytes) else None
            return History(bool(found), [], last, epoch, count == limit, too_large=True)
        events = [_entry_envelope(entry_id, _field(fields)) for entry_id, fields in page]
        return History(
            recovered=bool(found),
            events=events,
            last_id=page[-1][0].decode() if page else None,
            epoch=epoch,
            more=count == limit,
        )

    async def latest(self, channel: str, *, count: int) -> list[bytes]:
        """The newest ``count`` events, oldest first (a new subscriber's backlog)."""
        entries = await self.redis.xrevrange(stream_key(channel), count=count)
        return [_entry_envelope(i, fields[ENTRY_FIELD]) for i, fields in reversed(entries)]
