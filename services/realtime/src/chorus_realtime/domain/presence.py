"""Presence across replicas: who is in a room, and how many connections each user holds.

Model (all in Redis, so any replica answers the same):

- ``chorus:presence:<channel>`` is a hash whose fields are ``<replica>|<user id>`` and
  whose values are that user's connection count on that replica; beside it,
  ``chorus:presence-names:<channel>`` holds each present user's display name (from their
  token at join), so presence shows people, not numbers. Both live where the channel's
  events do (:class:`~chorus_common.events.KeyLayout`): on a Redis Cluster they are
  ``chorus:presence:{<channel>}`` and ``chorus:presence-names:{<channel>}``, in the
  channel's hash slot.
- ``chorus:alive:<channel>:<replica>`` (``chorus:alive:{<channel>}:<replica>``) exists
  while the replica lives and has members in the channel — in the same hash slot as the
  hash, so the scripts can check it on a cluster node.
- ``chorus:conns:<user id>`` is a hash ``<replica>`` → connections (the per-user limit),
  on the main Redis with the other limits, and ``chorus:replica:<replica>`` exists while
  the replica lives.
- Every third of ``presence_ttl`` a replica refreshes its keys (``SET … EX presence_ttl``)
  and the TTL of the hashes it has members in. ``<replica>`` is ``INSTANCE_ID`` plus a
  per-boot suffix, so a restarted pod with the same name is a different replica.

Fields of a replica whose liveness key has expired are ignored and deleted by whichever
script meets them next: a replica that dies without cleaning up drops out of presence
within ``presence_ttl`` seconds. Each change is one Lua script that updates the counter,
takes the aggregate over live replicas and, when the user's first connection joined the
room (or the last left), publishes the ``join`` (``leave``) event with that count through
the EventBus's own publish (the room's stream is in the same hash slot) — so the decision
is atomic across replicas, and the counts of concurrent joins arrive in event order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from chorus_common.events import PUBLISH_LUA_FUNCTION, EventBus, register_script

__all__ = ["Change", "Presence", "Present"]

logger = logging.getLogger("chorus.realtime.presence")

PRESENCE_PREFIX: Final = "chorus:presence:"
NAMES_PREFIX: Final = "chorus:presence-names:"
ALIVE_PREFIX: Final = "chorus:alive:"
CONNS_PREFIX: Final = "chorus:conns:"
REPLICA_PREFIX: Final = "chorus:replica:"

# Shared by the scripts: walk a hash of "<replica>|<user>" (or "<replica>") fields, drop
# those of dead replicas, and aggregate per user over the live ones. A replica lives while
# prefix .. replica exists — or, when fallback is not empty, fallback .. replica (on one
# Redis: a replica of the release before per-channel liveness keys).
_AGGREGATE = """
local function aggregate(key, self_replica, prefix, with_user, fallback)
  local all = redis.call('HGETALL', key)
  local alive = {}
  local per_user = {}
  local users = {}
  for i = 1, #all, 2 do
    local field = all[i]
    local replica, user = field, ''
    if with_user then
      local sep = string.find(field, '|', 1, true)
      replica = string.sub(field, 1, sep - 1)
      user = string.sub(field, sep + 1)
    end
    local ok = alive[replica]
    if ok == nil then
      ok = replica == self_replica or redis.call('EXISTS', prefix .. replica) == 1
      if not ok and fallback and fallback ~= '' then
        ok = redis.call('EXISTS', fallback .. replica) == 1
      end
      alive[replica] = ok
    end
    if ok then
      local n = tonumber(all[i + 1])
      if per_user[user] == nil then
        per_user[user] = 0
        table.insert(users, user)
      end
      per_user[user] = per_user[user] + n
    else
      redis.call('HDEL', key, field)
    end
  end
  return per_user, users
end
"""

# KEYS: presence hash, this replica's liveness key in the channel, the room's stream, its
# epoch, the room's names hash. ARGV: replica, user, delta, ttl, liveness key prefix,
# fallback replica key prefix ('' for none), the user's room connections that are news (1 on
# join, 0 on leave), then the event: pub/sub channel, envelope head and tail (the member
# count goes between), history max length, history ttl; then the display name ('' for
# none). Returns {this user's connections in the room, distinct members, the event's stream
# id or nil}. The count and the event are one step: events of concurrent joins carry counts
# in the order of their ids.
_CHANGE_LUA = (
    _AGGREGATE
    + PUBLISH_LUA_FUNCTION
    + """
local field = ARGV[1] .. '|' .. ARGV[2]
local n = redis.call('HINCRBY', KEYS[1], field, tonumber(ARGV[3]))
if n <= 0 then redis.call('HDEL', KEYS[1], field) end
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[4]))
local per_user, users = aggregate(KEYS[1], ARGV[1], ARGV[5], true, ARGV[6])
if ARGV[13] ~= '' then redis.call('HSET', KEYS[5], ARGV[2], ARGV[13]) end
local mine = per_user[ARGV[2]] or 0
if mine == 0 then redis.call('HDEL', KEYS[5], ARGV[2]) end
if #users > 0 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[4]))
end
local id = false
if mine == tonumber(ARGV[7]) then
  local body = ARGV[9] .. #users .. ARGV[10]
  id = publish(KEYS[3], KEYS[4], ARGV[8], body, ARGV[11], tonumber(ARGV[12]))
end
return {mine, #users, id}
"""
)

# KEYS: presence hash, names hash. ARGV: replica, liveness key prefix, fallback replica key
# prefix. Returns {user, count, name ('' if unknown), ...}.
_MEMBERS_LUA = (
    _AGGREGATE
    + """
local per_user, users = aggregate(KEYS[1], ARGV[1], ARGV[2], true, ARGV[3])
local out = {}
for _, user in ipairs(users) do
  table.insert(out, user)
  table.insert(out, per_user[user])
  table.insert(out, redis.call('HGET', KEYS[2], user) or '')
end
return out
"""
)

# KEYS: the user's connections hash. ARGV: replica, limit, ttl, replica key prefix.
# Returns 1 (acquired) or 0 (over the limit, nothing changed).
_ACQUIRE_LUA = (
    _AGGREGATE
    + """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local per_user = aggregate(KEYS[1], ARGV[1], ARGV[4], false, '')
if (per_user[''] or 0) > tonumber(ARGV[2]) then
  if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
  return 0
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""
)

# KEYS: the user's connections hash. ARGV: replica.
_RELEASE_LUA = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Present:
    """A user present in a room: their connections and display name (None if unknown)."""

    connections: int
    name: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of a join or leave: the user's connections left, distinct members.

    ``event_id`` is the stream id of the ``join``/``leave`` event it published, or None
    when the user's other connections kept them in (or out of) the room.
    """

    user_connections: int
    members: int
    event_id: str | None = None


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Presence:
    """This replica's view of, and contribution to, presence and connection counts.

    ``redis`` is the main Redis (connection counts, the replica's key); ``bus`` publishes
    on the Redis where the channels live (the room hashes), the same client on one Redis.
    """

    def __init__(self, redis: Redis, bus: EventBus, *, replica: str, ttl: float) -> None:
        if "|" in replica:
            msg = "replica names cannot contain '|'"
            raise ValueError(msg)
        self.redis = redis
        self.bus = bus
        self.events = bus.redis
        self.layout = layout = bus.layout
        self.replica = replica
        self.ttl = max(1, math.ceil(ttl))
        # On one Redis a replica of the previous release (no liveness keys per channel)
        # still counts while its global key lives; a cluster has no such replicas.
        self._fallback = "" if layout.tagged else REPLICA_PREFIX
        self._change = bus.script(_CHANGE_LUA)
        self._members = register_script(self.events, _MEMBERS_LUA)
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._release = redis.register_script(_RELEASE_LUA)
        #: Local connections per channel and user, and per user: what the heartbeat keeps.
        self._rooms: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._users: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    # -- membership --------------------------------------------------------------------------

    async def join(self, channel: str, user: str, name: str | None = None) -> Change:
        """Count one more connection of ``user`` (called ``name``); the first publishes ``join``."""
        self._rooms[channel][user] += 1
        return await self._apply(channel, user, 1, "join", name)

    async def leave(self, channel: str, user: str, name: str | None = None) -> Change:
        """One connection fewer of ``user`` (called ``name``); the last publishes ``leave``."""
        room = self._rooms.get(channel)
        if room is not None:
            room[user] -= 1
            if room[user] <= 0:
                del room[user]
            if not room:
                del self._rooms[channel]
        return await self._apply(channel, user, -1, "leave", name)

    def _keys(self, channel: str) -> tuple[str, str, str]:
        """The room's hash, the prefix of its liveness keys, its names (one hash slot)."""
        return (
            self.layout.key(PRESENCE_PREFIX, channel),
            self.layout.key(ALIVE_PREFIX, channel) + ":",
            self.layout.key(NAMES_PREFIX, channel),
        )

    async def _apply(
        self, channel: str, user: str, delta: int, event: str, name: str | None = None
    ) -> Change:
        room, alive, names = self._keys(channel)
        data: dict[str, object] = {"user_id": user}
        if name is not None:
            data["name"] = name
        head, tail = self.bus.encode_around(channel, event, data, sender=user, blank="count")
        raw = await self._change(
            keys=[room, alive + self.replica, *self.bus.keys(channel), names],
            args=[
                self.replica,
                user,
                delta,
                self.ttl,
                alive,
                self._fallback,
                1 if delta > 0 else 0,
                self.layout.pubsub(channel),
                head,
                tail,
                self.bus.history_size,
                self.bus.history_ttl,
                name or "",
            ],
        )
        event_id = raw[2].decode() if isinstance(raw[2], bytes) else None
        return Change(int(raw[0]), int(raw[1]), event_id)

    async def members(self, channel: str) -> dict[str, Present]:
        """Users present in ``channel`` on any live replica: connections and display names."""
        room, alive, names = self._keys(channel)
        raw = await self._members(keys=[room, names], args=[self.replica, alive, self._fallback])
        return {
            _text(raw[i]): Present(int(raw[i + 1]), _text(raw[i + 2]) or None)
            for i in range(0, len(raw), 3)
        }

    # -- connection quota --------------------------------------------------------------------

    async def acquire_connection(self, user: str, *, limit: int) -> bool:
        """Count a new connection of ``user``; False when it would exceed ``limit``."""
        ok = await self._acquire(
            keys=[CONNS_PREFIX + user], args=[self.replica, limit, self.ttl, REPLICA_PREFIX]
        )
        if int(ok) == 1:
            self._users[user] += 1
            return True
        return False

    async def release_connection(self, user: str) -> None:
        """Forget one connection of ``user``."""
        self._users[user] -= 1
        if self._users[user] <= 0:
            del self._users[user]
        await self._release(keys=[CONNS_PREFIX + user], args=[self.replica])

    # -- liveness ----------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Say this replica lives, and keep its rooms' and users' hashes from expiring."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(REPLICA_PREFIX + self.replica, "1", ex=self.ttl)
            for user in list(self._users):
                pipe.expire(CONNS_PREFIX + user, self.ttl)
            await pipe.execute()
        rooms = list(self._rooms)
        if rooms:
            async with self.events.pipeline(transaction=False) as pipe:
                for channel in rooms:
                    room, alive, names = self._keys(channel)
                    pipe.set(alive + self.replica, "1", ex=self.ttl)
                    pipe.expire(room, self.ttl)
                    pipe.expire(names, self.ttl)
                await pipe.execute()

    async def start(self) -> None:
        """Announce the replica and keep announcing it."""
        with contextlib.suppress(Exception):
            await self.heartbeat()
        self._task = asyncio.create_task(self._beat(), name="presence-heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.heartbeat()
            except Exception as exc:
                logger.warning("presence heartbeat failed: %s", exc)

    async def stop(self) -> None:
        """Stop announcing and withdraw the replica (its fields then count as dead)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.redis.delete(REPLICA_PREFIX + self.replica)
        with contextlib.suppress(Exception):
            async with self.events.pipeline(transaction=False) as pipe:
                for channel in list(self._rooms):
                    pipe.delete(self._keys(channel)[1] + self.replica)
                await pipe.execute()
