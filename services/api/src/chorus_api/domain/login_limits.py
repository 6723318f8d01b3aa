"""Password-guessing limits: every attempt is reserved in Redis before the password is checked.

One Lua script decides and counts in one step, so parallel guesses cannot all slip through
before the first failure is recorded: each attempt is counted *as a failure* when it is
admitted, and a correct password gives the count back (:meth:`LoginLimiter.succeeded`).
Unknown e-mails are counted like wrong passwords (keys hold hashes of e-mails, never
addresses of mail), so the limits do not tell which e-mails have accounts.

What is counted, for a login (or a profile change that checks the password) of account
*A* from client address *X*:

- **A known device of A** — a valid device cookie (:mod:`chorus_api.domain.devices`) —
  has its own budget, ``LOGIN_MAX_FAILURES_PER_DEVICE`` failures per window, and is not
  touched by anything below. Guessing from elsewhere never refuses the owner's browser.
- **A and X together** get ``LOGIN_FREE_FAILURES`` quick attempts, then a progressive
  delay: 1 s, 2 s, 4 s… up to ``LOGIN_WINDOW_SECONDS``, remembered until a window has
  passed since the delay ended. The delay holds from the admission (parallel guesses are
  refused before any is checked) and is armed again when the failure is answered
  (:meth:`LoginLimiter.failed`), so it counts from the answer: a slow password check
  does not use it up. One guesser at one address is slowed to one guess per
  window, while the owner at another address is not slowed at all: a third party cannot
  lock an account's owner out from one address.
- **A, from clients that are not its known devices**: after
  ``LOGIN_MAX_FAILURES_PER_ACCOUNT`` such failures in a window, they are refused until the
  window ends (429). Only guessing from several addresses gets here (one address is
  slowed below the limit); the owner's known devices still log in, and new devices wait
  for the window.
- **X, for every account**: after ``LOGIN_MAX_FAILURES_PER_ADDRESS`` failures in a window
  the address is *throttled*, not blocked — one office NAT, one person's typos must not
  lock out everyone behind it. A throttled address may still try accounts that have no
  recent failures, one attempt per ``window / LOGIN_MAX_FAILURES_PER_ADDRESS`` seconds
  (the rate the limit allows anyway; an attempt waits up to a few seconds for its turn);
  a successful login gives its turn back, so colleagues logging in do not use it up.
  Accounts with recent failures are refused from a throttled address until its window
  ends — they are the ones being guessed at.

The Retry-After of a refusal says when the same attempt would be admitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from chorus_api.domain.devices import account_digest
from chorus_api.domain.errors import RateLimitedError

__all__ = ["LoginLimiter", "Reservation"]

PREFIX: Final = "chorus:login:"
#: Longest an attempt at a throttled address waits for its turn before being refused.
THROTTLED_MAX_WAIT_MS: Final = 5_000

_COMMON_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function count(key) return tonumber(redis.call('GET', key) or '0') end
-- The pair's delay after its n-th failure: none for the free ones, then 1 s, 2 s, 4 s…
local function delay_after(n, free, window)
  if n < free then return 0 end
  return math.min(1000 * 2 ^ (n - free), window)
end
local function decrement(key)
  local n = count(key)
  if n > 1 then redis.call('DECR', key) elseif n == 1 then redis.call('DEL', key) end
end
"""

# KEYS: pair, account, address, lane, device. ARGV: window ms, free failures, max per
# account, max per address, lane interval ms, lane max wait ms, max per device, has device.
# Returns {reserved (0|1), scope, ms, counted, failure}: scope of a refusal (delay,
# account, address) or of the reservation (device, untrusted); ms = retry-after or the wait
# for the turn; counted = what the reservation counted ('d' device, 'u' untrusted, 'l' lane
# turn); failure = the pair's failure number this attempt is (0 on a device's budget).
_RESERVE_LUA = (
    _COMMON_LUA
    + """
local window = tonumber(ARGV[1])
local function bump(key)
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, window) end
end
local function remaining(key)
  local ms = redis.call('PTTL', key)
  if ms < 0 then return window end
  return ms
end
if ARGV[8] == '1' and count(KEYS[5]) < tonumber(ARGV[7]) then
  bump(KEYS[5])
  return {1, 'device', 0, 'd', 0}
end
local next_at = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
if now < next_at then return {0, 'delay', next_at - now, '', 0} end
local account = count(KEYS[2])
if account >= tonumber(ARGV[3]) then return {0, 'account', remaining(KEYS[2]), '', 0} end
local wait, counted = 0, 'u'
if count(KEYS[3]) >= tonumber(ARGV[4]) then
  if account > 0 then return {0, 'address', remaining(KEYS[3]), '', 0} end
  local interval, max_wait = tonumber(ARGV[5]), tonumber(ARGV[6])
  local turn = math.max(now, tonumber(redis.call('GET', KEYS[4]) or '0'))
  if turn - now > max_wait then return {0, 'address', turn - now - max_wait, '', 0} end
  redis.call('SET', KEYS[4], turn + interval, 'PX', turn + interval - now + 1000)
  wait, counted = turn - now, 'ul'
end
local failures = redis.call('HINCRBY', KEYS[1], 'f', 1)
local delay = delay_after(failures, tonumber(ARGV[2]), window)
redis.call('HSET', KEYS[1], 'next', now + wait + delay)
redis.call('PEXPIRE', KEYS[1], wait + delay + window)
bump(KEYS[2])
bump(KEYS[3])
return {1, 'untrusted', wait, counted, failures}
"""
)

# KEYS: as above. ARGV: the attempt's failure number, free failures, window ms. Arms the
# pair's delay again from now, the moment the failure is answered (never shortens it).
_FAILED_LUA = (
    _COMMON_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local window = tonumber(ARGV[3])
local delay = delay_after(tonumber(ARGV[1]), tonumber(ARGV[2]), window)
if now + delay > tonumber(redis.call('HGET', KEYS[1], 'next') or '0') then
  redis.call('HSET', KEYS[1], 'next', now + delay)
end
if redis.call('PTTL', KEYS[1]) < delay + window then
  redis.call('PEXPIRE', KEYS[1], delay + window)
end
return 1
"""
)

# KEYS: as above. ARGV: counted, lane interval ms, success (1: the owner proved
# themselves here, forget the pair's delay; 0: the attempt never got to the password).
_GIVE_BACK_LUA = (
    _COMMON_LUA
    + """
local counted = ARGV[1]
if string.find(counted, 'd', 1, true) then decrement(KEYS[5]) end
if string.find(counted, 'u', 1, true) then
  if ARGV[3] == '1' then
    redis.call('DEL', KEYS[1])
  elseif redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'f', -1)
  end
  decrement(KEYS[2])
  decrement(KEYS[3])
end
if string.find(counted, 'l', 1, true) then
  local turn = tonumber(redis.call('GET', KEYS[4]) or '0')
  if turn > now then redis.call('SET', KEYS[4], turn - tonumber(ARGV[2]), 'KEEPTTL') end
end
return 1
"""
)


@dataclass(frozen=True, slots=True)
class Reservation:
    """An admitted attempt, counted as a failure until :meth:`LoginLimiter.succeeded`."""

    keys: tuple[str, str, str, str, str]
    #: ``device`` (a known device's budget) or ``untrusted``.
    scope: str
    #: What was counted (see the script), so the refund undoes exactly that.
    counted: str
    #: Seconds to wait for the turn of a throttled address before checking the password.
    wait: float
    #: The pair's failure number this attempt counts as (0 on a known device's budget).
    failure: int = 0


def _keys(email: str, address: str, device: str | None) -> tuple[str, str, str, str, str]:
    account = account_digest(email)
    client = address[:64]
    return (
        f"{PREFIX}pair:{account}:{client}",
        f"{PREFIX}account:{account}",
        f"{PREFIX}address:{client}",
        f"{PREFIX}turn:{client}",
        f"{PREFIX}device:{device or '-'}",
    )


class LoginLimiter:
    """Reserves password attempts atomically and gives successful ones back."""

    def __init__(
        self,
        redis: Redis,
        *,
        window_seconds: int,
        free_failures: int,
        max_per_account: int,
        max_per_address: int,
        max_per_device: int,
    ) -> None:
        self.window_ms = window_seconds * 1000
        self.free_failures = free_failures
        self.max_per_account = max_per_account
        self.max_per_address = max_per_address
        self.max_per_device = max_per_device
        #: A throttled address gets the average rate its limit allows anyway.
        self.turn_ms = max(1, self.window_ms // max_per_address)
        self._reserve = redis.register_script(_RESERVE_LUA)
        self._give_back = redis.register_script(_GIVE_BACK_LUA)
        self._failed = redis.register_script(_FAILED_LUA)

    async def reserve(self, *, email: str, address: str, device: str | None) -> Reservation:
        """Admit one attempt at ``email``'s password, or raise :class:`RateLimitedError`.

        ``device`` is the nonce of a valid device cookie of this account (or None).
        """
        keys = _keys(email, address, device)
        reserved, scope, ms, counted, failure = await self._reserve(
            keys=list(keys),
            args=[
                self.window_ms,
                self.free_failures,
                self.max_per_account,
                self.max_per_address,
                self.turn_ms,
                THROTTLED_MAX_WAIT_MS,
                self.max_per_device,
                1 if device else 0,
            ],
        )
        scope_text = bytes(scope).decode()
        if not reserved:
            raise RateLimitedError(scope_text, max(1, math.ceil(int(ms) / 1000)))
        return Reservation(keys, scope_text, bytes(counted).decode(), int(ms) / 1000, int(failure))

    async def wait_turn(self, reservation: Reservation) -> None:
        """Sleep until a throttled address's turn comes (at once otherwise)."""
        if reservation.wait > 0:
            await asyncio.sleep(reservation.wait)

    async def succeeded(self, reservation: Reservation) -> None:
        """The password was right: this attempt was no failure (and its pair is cleared)."""
        await self._refund(reservation, success=True)

    async def failed(self, reservation: Reservation) -> None:
        """The password was wrong: the pair's delay, if this failure earns one, starts now.

        The admission already holds the delay; this only moves its start to the answer,
        so an outage here leaves the attempt counted and is not raised.
        """
        if reservation.failure < self.free_failures:
            return
        with contextlib.suppress(Exception):
            await self._failed(
                keys=list(reservation.keys),
                args=[reservation.failure, self.free_failures, self.window_ms],
            )

    async def release(self, reservation: Reservation) -> None:
        """The attempt ended before the password was judged (an outage): uncount it."""
        with contextlib.suppress(Exception):
            await self._refund(reservation, success=False)

    async def _refund(self, reservation: Reservation, *, success: bool) -> None:
        await self._give_back(
            keys=list(reservation.keys),
            args=[reservation.counted or "-", self.turn_ms, 1 if success else 0],
        )
