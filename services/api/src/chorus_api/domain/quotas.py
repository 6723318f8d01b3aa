"""Per-person quotas over a time window, counted in Redis so every api pod shares them.

A fixed window per (scope, subject): the first use starts the window, each use counts one,
and a use over the limit is refused without being counted — one Lua script checks and
counts, so parallel requests cannot slip past. Used for what one account could otherwise
make the system do to others: invitations (each may mail a stranger) and new
direct-message rooms (each may notify a stranger).
"""

from __future__ import annotations

import math
from typing import Final

from redis.asyncio import Redis

from chorus_api.domain.errors import RateLimitedError

__all__ = ["Quotas"]

PREFIX: Final = "chorus:quota:"

# KEYS: the counter. ARGV: limit, window ms. Returns {taken (1|0), ms until the window ends}.
_TAKE_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
  local ms = redis.call('PTTL', KEYS[1])
  if ms < 0 then ms = tonumber(ARGV[2]) end
  return {0, ms}
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, 0}
"""


class Quotas:
    """Fixed-window counters: :meth:`take` refuses past the limit, :meth:`try_take` says so."""

    def __init__(self, redis: Redis) -> None:
        self._take = redis.register_script(_TAKE_LUA)

    async def try_take(self, scope: str, subject: str, *, limit: int, window_seconds: int) -> int:
        """Count one use; 0 when taken, else the seconds until the window ends (not counted)."""
        taken, ms = await self._take(
            keys=[f"{PREFIX}{scope}:{subject}"], args=[limit, window_seconds * 1000]
        )
        return 0 if int(taken) == 1 else max(1, math.ceil(int(ms) / 1000))

    async def take(self, scope: str, subject: str, *, limit: int, window_seconds: int) -> None:
        """Count one use, or raise :class:`RateLimitedError` (``scope``, retry after)."""
        wait = await self.try_take(scope, subject, limit=limit, window_seconds=window_seconds)
        if wait:
            raise RateLimitedError(scope, wait)
