"""Per-user quotas that hold across connections and replicas: bytes sent, rooms created.

The per-connection limits (frame rate, frame size, channels) bound one socket; a user
holds up to ``MAX_CONNECTIONS_PER_USER`` of them on any replicas, so on their own they let
one account write connections x rate x size into Redis — megabytes a second, spread
over as many rooms as it likes, each room's stream keeping up to ``HISTORY_SIZE`` events.
These quotas bound the account itself:

- **bytes**: the text of every ``message`` a user sends is charged to a token bucket of
  ``USER_BYTES_BURST`` bytes refilled at ``USER_BYTES_PER_SECOND``; a message over it is
  refused with an ``error`` frame (``quota_exceeded``, with ``retry_after``) and not stored;
- **new rooms**: entering a room that has no history yet creates its stream in Redis; that
  costs one of ``USER_NEW_ROOMS_PER_MINUTE`` (a bucket of as many, refilled over a minute).
  Entering a room that exists costs nothing.

Each check is one Lua script on Redis, with Redis's clock, so every replica draws from the
same bucket: whatever the number of connections or replicas, the user gets the quota once.
The buckets live on the main Redis. When the channels live there too, whether a room is
new is asked in the same script; when they live on a Redis Cluster
(``REALTIME_REDIS_CLUSTER``), the room's stream is looked up there first (a room created
between the two steps costs its creator one charge, no more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from chorus_common.events import EventBus, stream_key

__all__ = ["QuotaExceeded", "QuotaSettings", "Quotas"]

_PREFIX: Final = "chorus:quota:"

# KEYS: the bucket, and a key whose existence makes the charge free (or the bucket again).
# ARGV: refill per second, capacity, cost. Returns {1, 0} (charged or free) or
# {0, milliseconds until the cost fits}.
_TAKE_LUA = """
if KEYS[2] ~= KEYS[1] and redis.call('EXISTS', KEYS[2]) == 1 then return {1, 0} end
local rate, cap, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'l', 't')
local level = tonumber(v[1])
if level == nil then
  level = cap
else
  level = math.min(cap, level + (now - tonumber(v[2])) * rate / 1000)
end
if level < cost then
  return {0, math.ceil((cost - level) * 1000 / rate)}
end
level = level - cost
redis.call('HSET', KEYS[1], 'l', tostring(level), 't', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - level) * 1000 / rate) + 1000)
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class QuotaSettings:
    """The quotas of one user (from settings)."""

    bytes_per_second: int
    bytes_burst: int
    new_rooms_per_minute: int


class QuotaExceeded(Exception):
    """A user's quota is spent; ``retry_after`` seconds until the request would fit."""

    def __init__(self, quota: str, retry_after: float) -> None:
        super().__init__(f"{quota} quota exceeded")
        self.quota = quota
        self.retry_after = retry_after


class Quotas:
    """Charges users' actions against their buckets in Redis."""

    def __init__(
        self, redis: Redis, settings: QuotaSettings, *, bus: EventBus | None = None
    ) -> None:
        self.settings = settings
        self._take = redis.register_script(_TAKE_LUA)
        #: Where the channels live when not on ``redis`` (a cluster), else None.
        self._channels = bus if bus is not None and bus.redis is not redis else None

    async def charge_bytes(self, user: str, size: int) -> None:
        """Charge ``size`` bytes of sent text; :class:`QuotaExceeded` when over."""
        key = f"{_PREFIX}bytes:{user}"
        await self._charge(
            "bytes",
            (key, key),
            rate=self.settings.bytes_per_second,
            capacity=self.settings.bytes_burst,
            cost=size,
        )

    async def enter_room(self, user: str, channel: str) -> None:
        """Charge a new room when ``channel`` has no history yet; existing rooms are free."""
        per_minute = self.settings.new_rooms_per_minute
        bucket = f"{_PREFIX}rooms:{user}"
        free_if = stream_key(channel)
        if self._channels is not None:
            if await self._channels.redis.exists(self._channels.layout.stream(channel)):
                return
            free_if = bucket  # the script's "free" key: none
        await self._charge(
            "rooms",
            (bucket, free_if),
            rate=per_minute / 60,
            capacity=per_minute,
            cost=1,
        )

    async def _charge(
        self, quota: str, keys: tuple[str, str], *, rate: float, capacity: int, cost: int
    ) -> None:
        allowed, retry_ms = await self._take(keys=list(keys), args=[rate, capacity, cost])
        if int(allowed) != 1:
            raise QuotaExceeded(quota, math.ceil(int(retry_ms) / 100) / 10)
