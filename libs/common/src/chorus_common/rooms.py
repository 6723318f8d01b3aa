"""Who may enter a room: the one rule, the access lists it reads, and how they change.

Rooms are the api's resources (Postgres ``rooms`` and ``room_members``). The question every
door asks — may this user read or write this room now? — is answered from a copy of each
room's access list in Redis, by one Lua function (:data:`ACCESS_FUNCTION_LUA`), whichever
service asks: realtime (join, ``subscribe``, publishing, typing, presence) and the api
(stored history). The rule:

- a name without an access list is a room that exists only by name: **open** to every
  signed-in user, as rooms always were — except direct-message names (``dm.<a>.<b>``),
  which exist only once the api made them;
- ``public``: open to everyone signed in (members are listed, not required);
- ``private``: its members only, whatever their role;
- ``deleted``: nobody (the name stays taken; its history was wiped).

**The copy.** ``chorus:room:<name>`` is a hash: ``s`` (the state), ``v`` (the room's access
version, raised in Postgres by every change) and ``u:<user id>`` → role for each member.
The api writes a room's whole list at once with its version (:meth:`RoomDirectory.write`);
a write older than what Redis holds is ignored, so racing writes leave the newest.
``chorus:rooms:loaded`` exists once the api has copied every room: until then (a fresh
Redis, or one that lost its data) nobody can tell which names are private, and every
check raises :class:`DirectoryUnavailableError` — deny, never guess.

**Taking access away, live.** A change that takes access away — a member removed from a
private room, a room made private, a room deleted — is written in the same script as an
event in the room's own stream (``member.removed``, ``room.updated``, ``room.deleted``):
the access list and the stream move at one instant. A realtime replica receives that
event in the room's order, so it drops the sockets concerned (:func:`revocation`) before
it delivers anything published after it. Realtime re-reads the versions of its rooms every
few seconds too, which bounds what a missed event could cost.

**Writes from clients** go through :meth:`RoomDirectory.publish`, which checks the rule and
publishes in one script: a message from someone removed a millisecond ago is refused by
Redis itself, whatever a replica has processed by then.

**One Redis, not a cluster.** Those scripts touch a room's access list, the marker and
the room's stream in one step, so all of them live on the main Redis (one server or a
Sentinel group). With channels on a Redis Cluster (``REALTIME_REDIS_CLUSTER``) they would
span hash slots, so there rooms are open by name only: realtime starts only with
``PRIVATE_ROOMS=false`` and then checks nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from chorus_common.events import (
    EPOCH_PREFIX,
    PLAIN,
    PUBLISH_LUA_FUNCTION,
    EventBus,
    Published,
    pubsub_channel,
    room_channel,
    stream_key,
)
from chorus_common.trace_context import current_traceparent
from chorus_common.tracing import child_tracer

__all__ = [
    "ACCESS_EVENT_TYPES",
    "ACCESS_FUNCTION_LUA",
    "DM_PREFIX",
    "LOADED_KEY",
    "Access",
    "DirectoryUnavailableError",
    "OpenRooms",
    "Revocation",
    "RoomAcl",
    "RoomDirectory",
    "RoomState",
    "Verdict",
    "dm_peer",
    "dm_room",
    "member_removed_event",
    "revocation",
    "room_deleted_event",
    "room_key",
    "room_updated_event",
]

ROOM_PREFIX: Final = "chorus:room:"
LOADED_KEY: Final = "chorus:rooms:loaded"
#: Names of direct-message rooms start with this (room names cannot otherwise be reserved).
DM_PREFIX: Final = "dm."
#: The durable publish of :mod:`chorus_common.events` with ``PUBLISH``: the access lists, the
#: marker and the channels' streams share one Redis (or Sentinel group), never a cluster.
_PUBLISH_FUNCTION: Final = PUBLISH_LUA_FUNCTION.replace("{publish}", PLAIN.publish_command)
#: Room events that take access away from someone (realtime acts on them in stream order).
ACCESS_EVENT_TYPES: Final = frozenset({"member.removed", "room.updated", "room.deleted"})


class RoomState(StrEnum):
    """What a room's access list says about who may enter."""

    PUBLIC = "public"
    PRIVATE = "private"
    DELETED = "deleted"


class Verdict(StrEnum):
    """The rule's answer for one user and one room."""

    #: A member (owner, admin or member).
    MEMBER = "member"
    #: Not a member, and the room is open to everyone signed in.
    OPEN = "open"
    DENIED = "denied"


class DirectoryUnavailableError(RuntimeError):
    """The access lists are not in Redis (yet, or any more): nobody may be let in."""


@dataclass(frozen=True, slots=True)
class Access:
    """The rule's answer, and the access version of the room it was read at."""

    verdict: Verdict
    version: int

    @property
    def allowed(self) -> bool:
        """True when the user may read and write the room."""
        return self.verdict is not Verdict.DENIED


@dataclass(frozen=True, slots=True)
class RoomAcl:
    """A room's whole access list, as the api writes it: state, version, members' roles."""

    state: RoomState
    version: int
    members: Mapping[str, str]


def room_key(room: str) -> str:
    """The Redis hash holding ``room``'s access list."""
    return ROOM_PREFIX + room


def dm_room(one: int | str, other: int | str) -> str:
    """The direct-message room of two users: ``dm.<smaller id>.<larger id>``."""
    low, high = sorted((int(one), int(other)))
    return f"{DM_PREFIX}{low}.{high}"


def dm_peer(room: str, user: str) -> str | None:
    """The other member of a direct-message room, or None when ``room`` is not one of ``user``."""
    if not room.startswith(DM_PREFIX):
        return None
    first, _, second = room[len(DM_PREFIX) :].partition(".")
    if user == first:
        return second or None
    if user == second:
        return first or None
    return None


#: The rule, once: ``room_access(acl key, loaded key, room, user, dm prefix)`` returns
#: ``verdict, version`` — verdict ``member``, ``open``, ``denied`` or ``unavailable``.
ACCESS_FUNCTION_LUA = """
local function room_access(acl, loaded, room, user, dm_prefix)
  local found = redis.call('HMGET', acl, 's', 'v', 'u:' .. user)
  local state, role = found[1], found[3]
  if not state then
    if redis.call('EXISTS', loaded) == 0 then return 'unavailable', 0 end
    if string.sub(room, 1, #dm_prefix) == dm_prefix then return 'denied', 0 end
    return 'open', 0
  end
  local version = tonumber(found[2]) or 0
  if state == 'deleted' then return 'denied', version end
  if role then return 'member', version end
  if state == 'public' then return 'open', version end
  return 'denied', version
end
"""

# KEYS: acl, loaded. ARGV: room, dm prefix, user ids... Returns {version, verdict...}.
_CHECK_LUA = (
    ACCESS_FUNCTION_LUA
    + """
local out = {0}
for i = 3, #ARGV do
  local verdict, version = room_access(KEYS[1], KEYS[2], ARGV[1], ARGV[i], ARGV[2])
  out[1] = version
  out[#out + 1] = verdict
end
return out
"""
)

# KEYS: acl, loaded, stream, epoch. ARGV: room, dm prefix, user, pub/sub channel, body,
# max length, ttl, durable (1|0). Publishes only if the user may; returns {verdict, id}.
_PUBLISH_LUA = (
    ACCESS_FUNCTION_LUA
    + _PUBLISH_FUNCTION
    + """
local verdict = room_access(KEYS[1], KEYS[2], ARGV[1], ARGV[3], ARGV[2])
if verdict == 'denied' or verdict == 'unavailable' then return {verdict, ''} end
if ARGV[8] == '1' then
  return {verdict, publish(KEYS[3], KEYS[4], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]))}
end
redis.call('PUBLISH', ARGV[4], '{"id":null,' .. string.sub(ARGV[5], 2))
return {verdict, ''}
"""
)

# KEYS: acl, stream, epoch. ARGV: version, force (1|0), state, member count, then user and
# role pairs, then event (1|0), pub/sub channel, body, max length, ttl. Replaces the list
# unless Redis holds this version or a newer one (force: always), then publishes the
# event; members go in by HSETs of 200 (Lua's unpack has a limit). Returns {applied (1|0),
# the version now held, the event's id or ''}.
_WRITE_LUA = (
    _PUBLISH_FUNCTION
    + """
local version = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[2] ~= '1' and version <= current then return {0, current, ''} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', ARGV[3], 'v', ARGV[1])
local count = tonumber(ARGV[4])
local args = {}
for i = 0, count - 1 do
  args[#args + 1] = 'u:' .. ARGV[5 + 2 * i]
  args[#args + 1] = ARGV[6 + 2 * i]
  if #args >= 400 then
    redis.call('HSET', KEYS[1], unpack(args))
    args = {}
  end
end
if #args > 0 then redis.call('HSET', KEYS[1], unpack(args)) end
local at = 5 + 2 * count
local id = ''
if ARGV[at] == '1' then
  id = publish(
    KEYS[2], KEYS[3], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], tonumber(ARGV[at + 4])
  )
end
return {1, version, id}
"""
)


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RoomDirectory:
    """The access lists in Redis: the rule's checks, guarded publishing, and the api's writes."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._check = redis.register_script(_CHECK_LUA)
        self._publish = redis.register_script(_PUBLISH_LUA)
        self._write = redis.register_script(_WRITE_LUA)

    # -- the rule ----------------------------------------------------------------------------

    async def check(self, room: str, user: str) -> Access:
        """May ``user`` enter ``room``? :class:`DirectoryUnavailableError` if nobody can tell."""
        version, verdicts = await self.check_many(room, [user])
        return Access(verdicts[user], version)

    async def check_many(self, room: str, users: Sequence[str]) -> tuple[int, dict[str, Verdict]]:
        """The rule for several users of one room at once: the version and each verdict."""
        if not users:
            return 0, {}
        raw = await self._check(keys=[room_key(room), LOADED_KEY], args=[room, DM_PREFIX, *users])
        verdicts = [_text(v) for v in raw[1:]]
        if "unavailable" in verdicts:
            msg = "room access lists are not loaded in Redis"
            raise DirectoryUnavailableError(msg)
        return int(raw[0]), {
            user: Verdict(verdict) for user, verdict in zip(users, verdicts, strict=True)
        }

    async def versions(self, rooms: Iterable[str]) -> dict[str, int]:
        """The access version Redis holds for each room (0: a room that exists only by name)."""
        names = list(rooms)
        if not names:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(room_key(name), "v")
            values = await pipe.execute()
        return {name: int(v) if v is not None else 0 for name, v in zip(names, values, strict=True)}

    async def publish(
        self,
        bus: EventBus,
        room: str,
        *,
        user: str,
        type_: str,
        data: dict[str, Any],
        durable: bool = True,
    ) -> Published | None:
        """Publish ``user``'s event into ``room`` if the rule lets them, in one script.

        Returns the published event (for an ephemeral one, its id is empty), or None when
        the rule refused; :class:`DirectoryUnavailableError` when it cannot tell.
        """
        channel = room_channel(room)
        tracing = child_tracer() if durable else None
        if tracing is None:  # off, unsampled, or ephemeral: no span, no traceparent
            return await self._guarded(
                bus, room, channel=channel, user=user, type_=type_, data=data, durable=durable
            )
        with tracing.start_as_current_span(
            f"publish {type_}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "redis",
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": channel,
                "chorus.event.type": type_,
            },
        ) as span:
            published = await self._guarded(
                bus,
                room,
                channel=channel,
                user=user,
                type_=type_,
                data=data,
                durable=durable,
                traceparent=current_traceparent(),
            )
            if published is not None:
                span.set_attribute("messaging.message.id", published.id)
            return published

    async def _guarded(
        self,
        bus: EventBus,
        room: str,
        *,
        channel: str,
        user: str,
        type_: str,
        data: dict[str, Any],
        durable: bool,
        traceparent: str | None = None,
    ) -> Published | None:
        body = bus.encode(channel, type_, data, user, traceparent)
        verdict, raw_id = await self._publish(
            keys=[room_key(room), LOADED_KEY, stream_key(channel), EPOCH_PREFIX + channel],
            args=[
                room,
                DM_PREFIX,
                user,
                pubsub_channel(channel),
                body,
                bus.history_size,
                bus.history_ttl,
                1 if durable else 0,
            ],
        )
        answer = _text(verdict)
        if answer == "unavailable":
            msg = "room access lists are not loaded in Redis"
            raise DirectoryUnavailableError(msg)
        if answer == "denied":
            return None
        entry = _text(raw_id)
        if not entry:
            return Published("", b'{"id":null,' + body[1:])
        return Published(entry, b'{"id":"' + entry.encode() + b'",' + body[1:])

    # -- the api's side ----------------------------------------------------------------------

    async def write(
        self,
        room: str,
        acl: RoomAcl,
        *,
        force: bool = False,
        event: tuple[str, dict[str, Any]] | None = None,
        bus: EventBus | None = None,
        sender: str = "api",
    ) -> str | None:
        """Replace ``room``'s access list with ``acl`` (and publish ``event`` with it).

        Ignored when Redis already holds ``acl.version`` or newer, unless ``force`` (a
        copy made while the room's row is locked in Postgres, so nothing newer can exist).
        Returns the event's stream id when one was published, else None.
        """
        channel = room_channel(room)
        args: list[Any] = [acl.version, 1 if force else 0, acl.state.value, len(acl.members)]
        for user, role in acl.members.items():
            args += [user, role]
        if event is not None:
            if bus is None:
                msg = "publishing an event needs the bus"
                raise ValueError(msg)
            body = bus.encode(channel, event[0], event[1], sender)
            args += [1, pubsub_channel(channel), body, bus.history_size, bus.history_ttl]
        else:
            args += [0, "", "", 0, 0]
        _, _, raw_id = await self._write(
            keys=[room_key(room), stream_key(channel), EPOCH_PREFIX + channel], args=args
        )
        entry = _text(raw_id)
        return entry or None

    async def loaded(self) -> bool:
        """True once every room's access list was copied to this Redis."""
        return bool(await self.redis.exists(LOADED_KEY))

    async def mark_loaded(self) -> None:
        """Say every room's access list is here (after a complete copy)."""
        await self.redis.set(LOADED_KEY, "1")


class OpenRooms(RoomDirectory):
    """Every room open to everyone signed in: no access lists are read (``PRIVATE_ROOMS=false``).

    For channels on a Redis Cluster, where the lists (on the main Redis) and a room's stream
    cannot be touched by one script. Publishing goes straight to the bus.
    """

    def __init__(self) -> None:  # no scripts: nothing here reads Redis
        pass

    async def check_many(self, room: str, users: Sequence[str]) -> tuple[int, dict[str, Verdict]]:
        """Everyone may enter."""
        return 0, dict.fromkeys(users, Verdict.OPEN)

    async def versions(self, rooms: Iterable[str]) -> dict[str, int]:
        """No room ever changes access."""
        return dict.fromkeys(rooms, 0)

    async def publish(
        self,
        bus: EventBus,
        room: str,
        *,
        user: str,
        type_: str,
        data: dict[str, Any],
        durable: bool = True,
    ) -> Published | None:
        """Publish ``user``'s event into ``room`` (an ephemeral one without an id)."""
        channel = room_channel(room)
        if durable:
            return await bus.publish(channel, type_, data, sender=user)
        return Published("", await bus.publish_ephemeral(channel, type_, data, sender=user))

    async def loaded(self) -> bool:
        """Always: there is nothing to load."""
        return True

    async def mark_loaded(self) -> None:
        """Nothing to mark."""

    async def write(
        self,
        room: str,
        acl: RoomAcl,
        *,
        force: bool = False,
        event: tuple[str, dict[str, Any]] | None = None,
        bus: EventBus | None = None,
        sender: str = "api",
    ) -> str | None:
        """Refused: open rooms keep no access lists."""
        msg = "open rooms keep no access lists"
        raise NotImplementedError(msg)


# -- events that take access away ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Revocation:
    """Who loses access to a room with an event: ``users``, everyone but ``keep``, or all."""

    reason: str
    version: int
    users: frozenset[str] | None = None
    keep: frozenset[str] | None = None

    def concerns(self, user: str) -> bool:
        """True when ``user`` loses access."""
        if self.users is not None:
            return user in self.users
        if self.keep is not None:
            return user not in self.keep
        return True


def member_removed_event(
    user_id: int | str, *, reason: str, private: bool, version: int
) -> tuple[str, dict[str, Any]]:
    """``member.removed``: ``reason`` is ``removed`` (by an owner or admin) or ``left``."""
    return "member.removed", {
        "user_id": str(user_id),
        "reason": reason,
        "private": private,
        "version": version,
    }


def room_updated_event(
    *, visibility: str, topic: str | None, version: int, members: Iterable[int | str] = ()
) -> tuple[str, dict[str, Any]]:
    """``room.updated``; made private, it lists the members (everyone else loses access)."""
    data: dict[str, Any] = {"visibility": visibility, "topic": topic, "version": version}
    if visibility == RoomState.PRIVATE:
        data["members"] = sorted(str(m) for m in members)
    return "room.updated", data


def room_deleted_event(*, version: int) -> tuple[str, dict[str, Any]]:
    """``room.deleted``: everyone loses access."""
    return "room.deleted", {"version": version}


def _version(data: Mapping[str, Any]) -> int:
    value = data.get("version")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def revocation(type_: str, data: Mapping[str, Any]) -> Revocation | None:
    """Who an access event in a room's stream takes access from (None: nobody)."""
    if type_ == "room.deleted":
        return Revocation("deleted", _version(data))
    if type_ == "member.removed" and data.get("private") is True:
        user = data.get("user_id")
        if isinstance(user, str):
            reason = "left" if data.get("reason") == "left" else "removed"
            return Revocation(reason, _version(data), users=frozenset({user}))
    if type_ == "room.updated" and data.get("visibility") == RoomState.PRIVATE:
        members = data.get("members")
        if isinstance(members, list):
            keep = frozenset(m for m in members if isinstance(m, str))
            return Revocation("private", _version(data), keep=keep)
    return None
