"""Events: the envelope, channel names, the atomic publish, and history from an offset.

This module is the one way anything is published in Chorus (``docs/design.md``):

- every event is the JSON envelope ``{"id", "channel", "type", "data", "ts", "from"}``;
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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from chorus_common.settings import EventHistorySettings

__all__ = [
    "EPOCH_PREFIX",
    "FROM_START",
    "PUBLISH_FUNCTION_LUA",
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
#: The resume offset that means "everything": before any stream id.
FROM_START: Final = "0-0"

_ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_USER_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")

#: The durable publish as a Lua function, for this module's script and for scripts that
#: publish after checks of their own (``chorus_common.rooms``): stream key, epoch key, pub/sub
#: channel, body (a JSON object without "id"), approximate max length, ttl seconds (0 =
#: none). Returns the new stream id.
PUBLISH_FUNCTION_LUA = """
local function chorus_publish(stream, epoch, channel, body, maxlen, ttl)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'e', body)
  redis.call('SET', epoch, id, 'NX')
  local seconds = tonumber(ttl)
  if seconds > 0 then
    redis.call('EXPIRE', stream, seconds)
    redis.call('EXPIRE', epoch, seconds)
  end
  redis.call('PUBLISH', channel, '{"id":"' .. id .. '",' .. string.sub(body, 2))
  return id
end
"""

# KEYS: stream, epoch. ARGV: pub/sub channel, body, approximate max length, ttl seconds.
# Returns the new stream id.
_PUBLISH_LUA = (
    PUBLISH_FUNCTION_LUA
    + "return chorus_publish(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n"
)

# KEYS: stream, epoch. ARGV: offset, most entries, most bytes. Returns {offset found (0|1),
# epoch, entries after the offset, their bytes, the entries — or, over the bytes, the
# last id only}: the size is measured in Redis, so a page too large is never sent. From
# FROM_START the offset counts as found while the stream still holds its first event.
_HISTORY_LUA = """
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local epoch = redis.call('GET', KEYS[2])
local found
if ARGV[1] == '0-0' then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  found = (#first == 0 or first[1][1] == epoch) and 1 or 0
else
  found = #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1], 'COUNT', 1)
end
local size = 0
for i = 1, #entries do
  local fields = entries[i][2]
  for j = 2, #fields, 2 do size = size + #fields[j] end
end
if size > tonumber(ARGV[3]) then
  return {found, epoch, #entries, size, entries[#entries][1]}
end
return {found, epoch, #entries, size, entries}
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

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        """Parse an envelope as published or stored."""
        return cls.model_validate(orjson.loads(raw))

    def to_json(self) -> bytes:
        """The wire form, with ``from`` spelled as on the wire."""
        return orjson.dumps(self.model_dump(by_alias=True))


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
    def encode(channel: str, type_: str, data: dict[str, Any], sender: str) -> bytes:
        """The envelope without its id: a JSON object the script completes."""
        return orjson.dumps(
            {"channel": channel, "type": type_, "data": data, "ts": utc_timestamp(), "from": sender}
        )

    async def publish(
        self, channel: str, type_: str, data: dict[str, Any], *, sender: str
    ) -> Published:
        """Append to the channel's history and deliver live, atomically; returns the id."""
        body = self.encode(channel, type_, data, sender)
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
        :data:`FROM_START` (``0-0``) asks for the whole history: recovered while the stream
        still holds its first event (its epoch) — a room younger than its history window,
        which a client that has nothing yet can read in full. With ``max_bytes``, a page
        whose stored events add up to more is not sent at all (``too_large``): Redis
        measures it, so the caller never holds more than it asked.
        """
        parse_stream_id(since)
        key = stream_key(channel)
        if max_bytes is not None:
            return await self._bounded_history(key, channel, since, limit, max_bytes)
        from_start = since == FROM_START
        async with self.redis.pipeline(transaction=True) as pipe:
            if from_start:
                pipe.xrange(key, min="-", max="+", count=1)
            else:
                pipe.xrange(key, min=since, max=since, count=1)
            pipe.xrange(key, min=f"({since}", max="+", count=limit)
            pipe.get(EPOCH_PREFIX + channel)
            anchor, entries, epoch = await pipe.execute()
        events = [_entry_envelope(entry_id, fields[ENTRY_FIELD]) for entry_id, fields in entries]
        recovered = bool(anchor)
        if from_start:
            recovered = not anchor or anchor[0][0] == epoch
        return History(
            recovered=recovered,
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
