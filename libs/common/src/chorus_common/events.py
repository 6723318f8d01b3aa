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

**Key layouts** (:class:`KeyLayout`). On one Redis (or a Sentinel group) the keys are
plain (:data:`PLAIN`: ``chorus:stream:room:lobby``) and live events go out with
``PUBLISH``. On a Redis Cluster (``REALTIME_REDIS_CLUSTER``, :data:`CLUSTER`) every key of
a channel carries the channel as its hash tag — ``chorus:stream:{room:lobby}``,
``chorus:epoch:{room:lobby}``, realtime's ``chorus:presence:{room:lobby}`` and the shard
channel ``chorus:pub:{room:lobby}`` — so they share one hash slot, the publish script stays
atomic on the node that owns it, and live events go out with ``SPUBLISH`` to the
subscribers of that node alone. :meth:`EventBus.from_settings` picks the layout from the
settings, so every publisher writes where realtime reads.

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
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from chorus_common.settings import EventHistorySettings
from chorus_common.trace_context import current_traceparent
from chorus_common.tracing import child_tracer

__all__ = [
    "CLUSTER",
    "EPOCH_PREFIX",
    "FROM_START",
    "PLAIN",
    "PUBLISH_LUA_FUNCTION",
    "Envelope",
    "EventBus",
    "EventRedis",
    "History",
    "InvalidChannelError",
    "InvalidStreamIdError",
    "KeyLayout",
    "Position",
    "Published",
    "parse_stream_id",
    "pubsub_channel",
    "register_script",
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

#: The client the channels live on: the main Redis, or the cluster's client.
EventRedis = Redis | RedisCluster

#: Lua defining ``publish(stream, epoch, pubsub, body, maxlen, ttl)`` → the new stream id:
#: the durable publish, for any script that must change state of its own and publish in the
#: same atomic step (presence publishes ``join``/``leave`` with the count it just computed;
#: ``chorus_common.rooms`` publishes after its access check). ``stream`` and ``epoch`` must
#: be among the script's KEYS (:meth:`EventBus.keys`), and ``{publish}`` replaced by the
#: layout's command (:meth:`EventBus.script`): PUBLISH, or SPUBLISH on a cluster (the shard
#: channel shares the keys' slot).
PUBLISH_LUA_FUNCTION: Final = """
local function publish(stream, epoch, pubsub, body, maxlen, ttl)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'e', body)
  redis.call('SET', epoch, id, 'NX')
  if ttl > 0 then
    redis.call('EXPIRE', stream, ttl)
    redis.call('EXPIRE', epoch, ttl)
  end
  redis.call('{publish}', pubsub, '{"id":"' .. id .. '",' .. string.sub(body, 2))
  return id
end
"""

# KEYS: stream, epoch. ARGV: pub/sub channel, body (a JSON object without "id"),
# approximate max length, ttl seconds (0 = none). Returns the new stream id.
_PUBLISH_LUA = (
    PUBLISH_LUA_FUNCTION
    + "return publish(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]))\n"
)

# Whether the offset ARGV[1] is still in the stream KEYS[1] whose epoch is ``epoch``: from
# FROM_START (0-0), while the stream still holds its first event.
_FOUND_LUA = """
local function offset_found(epoch)
  if ARGV[1] == '0-0' then
    local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
    return (#first == 0 or first[1][1] == epoch) and 1 or 0
  end
  return #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1], 'COUNT', 1)
end
"""

# KEYS: stream, epoch. ARGV: offset, most entries. Returns {offset found (0|1), the entries
# after it, the epoch}: read together, as one atomic step.
_HISTORY_LUA = (
    _FOUND_LUA
    + """
local epoch = redis.call('GET', KEYS[2])
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return {offset_found(epoch), entries, epoch}
"""
)

# KEYS: stream, epoch. Returns {the newest entry's id or false, the epoch}.
_POSITION_LUA = """
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = false
if #newest > 0 then id = newest[1][1] end
return {id, redis.call('GET', KEYS[2])}
"""

# KEYS: stream, epoch. ARGV: offset, most entries, most bytes. Returns {offset found (0|1),
# epoch, entries after the offset, their bytes, the entries — or, over the bytes, the
# last id only}: the size is measured in Redis, so a page too large is never sent.
_BOUNDED_HISTORY_LUA = (
    _FOUND_LUA
    + """
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local epoch = redis.call('GET', KEYS[2])
local found = offset_found(epoch)
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
)


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


class KeyLayout:
    """Where a channel's keys and live events are: plain names, or hash-tagged for a cluster."""

    __slots__ = ("publish_command", "tagged")

    def __init__(self, *, tagged: bool) -> None:
        self.tagged = tagged
        #: The command that delivers live events: sharded on a cluster.
        self.publish_command = "SPUBLISH" if tagged else "PUBLISH"

    def __repr__(self) -> str:
        return "CLUSTER" if self.tagged else "PLAIN"

    def key(self, prefix: str, channel: str) -> str:
        """``prefix`` + ``channel``: ``chorus:x:room:a``, or ``chorus:x:{room:a}`` tagged."""
        return f"{prefix}{{{channel}}}" if self.tagged else prefix + channel

    def stream(self, channel: str) -> str:
        """The Redis stream holding ``channel``'s history."""
        return self.key(STREAM_PREFIX, channel)

    def epoch(self, channel: str) -> str:
        """The key holding the first id of ``channel``'s current history."""
        return self.key(EPOCH_PREFIX, channel)

    def pubsub(self, channel: str) -> str:
        """The (shard) channel carrying ``channel``'s live events."""
        return self.key(PUBSUB_PREFIX, channel)

    def channel_of(self, name: str, prefix: str = PUBSUB_PREFIX) -> str:
        """The Chorus channel of a key or pub/sub channel (:meth:`key`'s inverse)."""
        rest = name.removeprefix(prefix)
        return rest[1:-1] if self.tagged else rest

    def pattern(self, prefix: str, channel_prefix: str) -> str:
        """A ``SCAN MATCH`` pattern for the keys of every channel starting ``channel_prefix``."""
        return f"{prefix}{{{channel_prefix}*}}" if self.tagged else f"{prefix}{channel_prefix}*"


#: Keys of a single Redis (or a Sentinel group): ``chorus:stream:room:lobby``, PUBLISH.
PLAIN: Final = KeyLayout(tagged=False)
#: Keys of a Redis Cluster: ``chorus:stream:{room:lobby}``, one slot per channel, SPUBLISH.
CLUSTER: Final = KeyLayout(tagged=True)


def stream_key(channel: str, layout: KeyLayout = PLAIN) -> str:
    """The Redis stream holding ``channel``'s history."""
    return layout.stream(channel)


def pubsub_channel(channel: str, layout: KeyLayout = PLAIN) -> str:
    """The Redis pub/sub channel carrying ``channel``'s live events."""
    return layout.pubsub(channel)


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
    """Publishes events and reads their history, on the Redis the channels live on."""

    def __init__(
        self,
        redis: EventRedis,
        *,
        history_size: int,
        history_ttl: int,
        layout: KeyLayout = PLAIN,
    ) -> None:
        if history_size < 1:
            msg = "history_size must be at least 1"
            raise ValueError(msg)
        if isinstance(redis, RedisCluster) != layout.tagged:
            wanted = "CLUSTER" if isinstance(redis, RedisCluster) else "PLAIN"
            msg = f"a {type(redis).__name__} client needs the {wanted} key layout"
            raise ValueError(msg)
        self.redis = redis
        self.layout = layout
        self.history_size = history_size
        self.history_ttl = history_ttl
        self._publish = self.script(_PUBLISH_LUA)
        self._history = register_script(redis, _HISTORY_LUA)
        self._position = register_script(redis, _POSITION_LUA)
        self._bounded_history = register_script(redis, _BOUNDED_HISTORY_LUA)

    @classmethod
    def from_settings(cls, redis: EventRedis, settings: EventHistorySettings) -> EventBus:
        """The bus of a service: ``HISTORY_SIZE``, ``HISTORY_TTL``, and the layout of where
        the channels live (``redis`` is the cluster's client when ``REALTIME_REDIS_CLUSTER``
        is set, else the main Redis)."""
        layout = CLUSTER if settings.cluster_seeds is not None else PLAIN
        return cls(
            redis,
            history_size=settings.history_size,
            history_ttl=settings.history_ttl,
            layout=layout,
        )

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

    def keys(self, channel: str) -> list[str]:
        """The keys a script passes to ``publish`` (:data:`PUBLISH_LUA_FUNCTION`), in order."""
        return [self.layout.stream(channel), self.layout.epoch(channel)]

    def script(self, source: str) -> AsyncScript:
        """A script including :data:`PUBLISH_LUA_FUNCTION`, registered on the bus's Redis
        with the layout's publish command."""
        return register_script(self.redis, source.replace("{publish}", self.layout.publish_command))

    @staticmethod
    def encode_around(
        channel: str, type_: str, data: dict[str, Any], *, sender: str, blank: str
    ) -> tuple[bytes, bytes]:
        """The envelope without its id, split where the integer ``data[blank]`` goes.

        A script publishing a number it computes itself joins ``head .. n .. tail``. The
        blank comes first in ``data``, so ``"data":{"<blank>":`` occurs once: a string
        value cannot hold an unescaped quote.
        """
        body = EventBus.encode(channel, type_, {blank: 0, **data}, sender)
        marker = b'"data":{' + orjson.dumps(blank) + b":"
        head, found, tail = body.partition(marker + b"0")
        if not found:
            msg = f"data[{blank!r}] did not encode as the integer blank"
            raise ValueError(msg)
        return head + marker, tail

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
        layout = self.layout
        raw_id = await self._publish(
            keys=self.keys(channel),
            args=[layout.pubsub(channel), body, self.history_size, self.history_ttl],
        )
        entry_id = raw_id if isinstance(raw_id, bytes) else str(raw_id).encode()
        return Published(entry_id.decode(), _entry_envelope(entry_id, body))

    async def publish_ephemeral(
        self, channel: str, type_: str, data: dict[str, Any], *, sender: str
    ) -> bytes:
        """Deliver live only (typing indicators): no history, ``id`` is null."""
        payload = b'{"id":null,' + self.encode(channel, type_, data, sender)[1:]
        await self.redis.execute_command(
            self.layout.publish_command, self.layout.pubsub(channel), payload
        )
        return payload

    async def epoch(self, channel: str) -> str | None:
        """The first stream id of the channel's current history, or None if it has none."""
        raw = await self.redis.get(self.layout.epoch(channel))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def position(self, channel: str) -> Position:
        """The channel's newest stream id and epoch, read together."""
        newest, epoch = await self._position(
            keys=[self.layout.stream(channel), self.layout.epoch(channel)]
        )
        return Position(last_id=_text(newest), epoch=_text(epoch))

    async def history(
        self, channel: str, since: str, *, limit: int = 1000, max_bytes: int | None = None
    ) -> History:
        """Events published after ``since``, and whether nothing in between was lost.

        The offset's own entry is looked up in the same script as the page: if it is still
        in the stream, every later entry is too (trimming removes from the head).
        :data:`FROM_START` (``0-0``) asks for the whole history: recovered while the stream
        still holds its first event (its epoch) — a room younger than its history window,
        which a client that has nothing yet can read in full. With ``max_bytes``, a page
        whose stored events add up to more is not sent at all (``too_large``): Redis
        measures it, so the caller never holds more than it asked.
        """
        parse_stream_id(since)
        keys = [self.layout.stream(channel), self.layout.epoch(channel)]
        if max_bytes is not None:
            return await self._bounded(keys, since, limit, max_bytes)
        found, entries, epoch = await self._history(keys=keys, args=[since, limit])
        events = [_entry_envelope(entry_id, _field(fields)) for entry_id, fields in entries]
        return History(
            recovered=bool(found),
            events=events,
            last_id=entries[-1][0].decode() if entries else None,
            epoch=_text(epoch),
            more=len(entries) == limit,
        )

    async def _bounded(self, keys: list[str], since: str, limit: int, max_bytes: int) -> History:
        found, raw_epoch, count, size, page = await self._bounded_history(
            keys=keys, args=[since, limit, max(0, max_bytes)]
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
        entries = await self.redis.xrevrange(self.layout.stream(channel), count=count)
        return [_entry_envelope(i, fields[ENTRY_FIELD]) for i, fields in reversed(entries)]


def register_script(redis: EventRedis, script: str) -> AsyncScript:
    """``redis.register_script(script)`` for either client (redis-py types it for ``Redis``
    only; ``RedisCluster`` has the same method, routing by the script's keys)."""
    return redis.register_script(script)  # type: ignore[misc]


def _text(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) else None
