"""Sign-up limits in Redis: per client address and for the whole deployment.

Every registration — new e-mail or not, so the limit reveals nothing — takes one sign-up
from two fixed-window counters before any password is hashed: its address's
(``SIGNUP_MAX_PER_ADDRESS`` per ``SIGNUP_WINDOW_SECONDS``) and the deployment's
(``SIGNUP_MAX_PER_MINUTE``). One Lua script checks both and counts both, so parallel
sign-ups cannot overshoot, and a refused one counts nowhere. The address limit stops one
client from minting accounts (or mail to strangers); the global one bounds what a botnet
can make the api hash and the worker mail, whatever its number of addresses.
"""

from __future__ import annotations

import math
from typing import Final

from redis.asyncio import Redis

from chorus_api.domain.errors import RateLimitedError

__all__ = ["SignupLimiter"]

PREFIX: Final = "chorus:signups:"
_GLOBAL_WINDOW_MS: Final = 60_000

# KEYS: address counter, global counter. ARGV: max per address, address window ms, max
# per minute, global window ms. Returns {admitted, scope, retry ms}.
_ADMIT_LUA = """
local function count(key) return tonumber(redis.call('GET', key) or '0') end
local function remaining(key, window)
  local ms = redis.call('PTTL', key)
  if ms < 0 then return window end
  return ms
end
if count(KEYS[1]) >= tonumber(ARGV[1]) then
  return {0, 'address', remaining(KEYS[1], tonumber(ARGV[2]))}
end
if count(KEYS[2]) >= tonumber(ARGV[3]) then
  return {0, 'global', remaining(KEYS[2], tonumber(ARGV[4]))}
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if redis.call('INCR', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return {1, '', 0}
"""


class SignupLimiter:
    """Admits a registration or raises :class:`RateLimitedError` (scope address/global)."""

    def __init__(
        self, redis: Redis, *, window_seconds: int, max_per_address: int, max_per_minute: int
    ) -> None:
        self.window_ms = window_seconds * 1000
        self.max_per_address = max_per_address
        self.max_per_minute = max_per_minute
        self._admit = redis.register_script(_ADMIT_LUA)

    async def admit(self, *, address: str) -> None:
        """Count one sign-up from ``address``, or refuse it."""
        admitted, scope, ms = await self._admit(
            keys=[f"{PREFIX}address:{address[:64]}", f"{PREFIX}global"],
            args=[self.max_per_address, self.window_ms, self.max_per_minute, _GLOBAL_WINDOW_MS],
        )
        if not admitted:
            raise RateLimitedError(bytes(scope).decode(), max(1, math.ceil(int(ms) / 1000)))
