"""Per-subject limits — requests/min, tokens/min, concurrent streams — exact across replicas.

Admission is ONE Lua script, so checking and reserving happen atomically in Redis, with
Redis's clock: whatever the number of gateway replicas, no two requests can both take
the last tokens.

- Requests/min and tokens/min are token buckets of capacity ``limit`` refilled
  continuously at ``limit`` per 60 s (how OpenAI describes its own limits). A request
  costs 1 request and reserves ``prompt estimate + n * completion cap`` tokens.
- When the request ends, :meth:`Limiter.settle` replaces the reservation with the real
  usage: the unused part is refunded, an overrun is charged (the bucket may go below
  zero; later requests then wait for it to refill).
- Concurrent streams are leases in a sorted set scored by expiry. A running request's
  lease is renewed every third of ``GATEWAY_LEASE_SECONDS``; if its process dies the
  lease lapses and the slot frees itself within that time.

A rejection is OpenAI's 429 (``rate_limit_exceeded``) with ``retry-after`` and the
``x-ratelimit-*`` headers, which every response also carries.

**Headroom** (:meth:`Limiter.headroom`): every admission answer also tells this replica
how much of each limit a subject had left. While the last answer (at most
``HEADROOM_SECONDS`` old, minus what this replica has admitted on it since) still covers
a request, the caller may run the admission concurrently with the upstream call instead
of before it (``gateway``): the admission itself stays the same atomic script, so the
limits stay exact; only a subject close to a limit, or unknown here, waits for it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from chorus_gateway.domain.auth import Limits, Principal
from chorus_gateway.domain.errors import GatewayError

__all__ = ["Admission", "Limiter", "RateLimited", "format_duration"]

logger = logging.getLogger("chorus.gateway.limits")

#: The limits are per minute: a bucket refills from empty to ``limit`` in this window.
WINDOW_MS = 60_000
#: How long an admission answer is trusted as a hint of a subject's headroom.
HEADROOM_SECONDS = 5.0
_HEADROOM_SUBJECTS = 10_000

# WINDOW is WINDOW_MS, written into the scripts' text (their SHA follows the constant).
_LEVEL_LUA = (
    f"local WINDOW = {WINDOW_MS}\n"
    + """
local function level(key, cap, now)
  local v = redis.call('HMGET', key, 'l', 't')
  local l = tonumber(v[1])
  if l == nil then return cap end
  l = l + (now - tonumber(v[2])) * cap / WINDOW
  if l > cap then l = cap end
  return l
end
local function store(key, l, cap, now)
  redis.call('HSET', key, 'l', tostring(l), 't', now)
  redis.call('PEXPIRE', key, math.ceil((cap - l) * WINDOW / cap) + 1000)
end
local function reset_ms(l, cap)
  if cap <= 0 then return 0 end
  return math.ceil((cap - l) * WINDOW / cap)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
)

# KEYS: requests bucket, tokens bucket, leases. ARGV: rpm, tpm, concurrency, cost, lease
# member, lease ms. Returns {admitted, limit, retry ms, requests left, tokens left,
# requests reset ms, tokens reset ms, slots left}.
_ADMIT_LUA = (
    _LEVEL_LUA
    + """
local rpm, tpm, slots = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cost, lease = tonumber(ARGV[4]), tonumber(ARGV[6])
local req = rpm > 0 and level(KEYS[1], rpm, now) or 0
local tok = tpm > 0 and level(KEYS[2], tpm, now) or 0
local active = 0
if slots > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  active = redis.call('ZCARD', KEYS[3])
end
local function answer(ok, which, retry)
  return {ok, which, retry, math.floor(req), math.floor(tok), reset_ms(req, rpm),
          reset_ms(tok, tpm), slots - active}
end
if rpm > 0 and req < 1 then
  return answer(0, 'requests', math.ceil((1 - req) * WINDOW / rpm))
end
if tpm > 0 and cost > tpm then
  return answer(0, 'tokens_too_large', 0)
end
if tpm > 0 and tok < cost then
  return answer(0, 'tokens', math.ceil((cost - tok) * WINDOW / tpm))
end
if slots > 0 and active >= slots then
  return answer(0, 'concurrency', 1000)
end
if rpm > 0 then
  req = req - 1
  store(KEYS[1], req, rpm, now)
end
if tpm > 0 then
  tok = tok - cost
  store(KEYS[2], tok, tpm, now)
end
if slots > 0 then
  redis.call('ZADD', KEYS[3], now + lease, ARGV[5])
  redis.call('PEXPIRE', KEYS[3], lease + 1000)
  active = active + 1
end
return answer(1, 'ok', 0)
"""
)

# KEYS: tokens bucket, leases. ARGV: tpm, tokens to give back (negative: to charge),
# lease member. Replaces a reservation by what was used and frees the slot.
_SETTLE_LUA = (
    _LEVEL_LUA
    + """
local tpm, back = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 and back ~= 0 then
  local l = level(KEYS[1], tpm, now) + back
  if l > tpm then l = tpm end
  store(KEYS[1], l, tpm, now)
end
redis.call('ZREM', KEYS[2], ARGV[3])
return 1
"""
)

# KEYS: leases. ARGV: member, lease ms. Pushes a live lease's expiry forward.
_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
return n
"""


def format_duration(ms: int) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` format: ``120ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    seconds = math.ceil(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _keys(subject: str) -> tuple[str, str, str]:
    # The hash tag keeps a subject's keys in one slot, as Redis Cluster requires.
    base = f"chorus:gw:rl:{{{subject}}}"
    return f"{base}:req", f"{base}:tok", f"{base}:conc"


@dataclass(slots=True)
class Admission:
    """An admitted request's reservation, and the headers describing the limits."""

    subject: str
    member: str
    limits: Limits
    reserved: int
    headers: dict[str, str]
    settled: bool = field(default=False)


class RateLimited(GatewayError):
    """A 429 from the gateway's own limits; ``limit`` is requests, tokens or concurrency."""

    def __init__(self, limit: str, message: str, *, error_type: str, headers: dict[str, str]):
        super().__init__(
            429, message, error_type=error_type, code="rate_limit_exceeded", headers=headers
        )
        self.limit = limit


def _headers(limits: Limits, answer: list[object]) -> dict[str, str]:
    headers: dict[str, str] = {}
    if limits.requests_per_minute:
        headers["x-ratelimit-limit-requests"] = str(limits.requests_per_minute)
        headers["x-ratelimit-remaining-requests"] = str(max(0, _int(answer[3])))
        headers["x-ratelimit-reset-requests"] = format_duration(_int(answer[5]))
    if limits.tokens_per_minute:
        headers["x-ratelimit-limit-tokens"] = str(limits.tokens_per_minute)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, _int(answer[4])))
        headers["x-ratelimit-reset-tokens"] = format_duration(_int(answer[6]))
    return headers


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _rejection(
    principal: Principal, which: str, retry_ms: int, cost: int, headers: dict[str, str]
) -> RateLimited:
    limits = principal.limits
    retry_s = max(1, math.ceil(retry_ms / 1000))
    if which == "tokens_too_large":
        message = (
            f"Request too large for {principal.subject} on tokens per min (TPM): "
            f"Limit {limits.tokens_per_minute}, Requested {cost}. Lower max_tokens or "
            "shorten the messages."
        )
        return RateLimited("tokens", message, error_type="tokens", headers=headers)
    if which == "requests":
        what = f"requests per min (RPM): Limit {limits.requests_per_minute}, Requested 1"
        error_type = "requests"
    elif which == "tokens":
        what = f"tokens per min (TPM): Limit {limits.tokens_per_minute}, Requested {cost}"
        error_type = "tokens"
    else:
        which = "concurrency"
        what = f"concurrent streams: Limit {limits.concurrent_streams}"
        error_type = "requests"
    headers = {**headers, "retry-after": str(retry_s), "retry-after-ms": str(retry_ms)}
    return RateLimited(
        which,
        f"Rate limit reached for {principal.subject} on {what}. "
        f"Please try again in {retry_ms / 1000:g}s.",
        error_type=error_type,
        headers=headers,
    )


class Limiter:
    """Admits and settles requests against per-subject limits in Redis."""

    def __init__(self, redis: Redis, *, lease_seconds: float) -> None:
        self._redis = redis
        self._lease_ms = round(lease_seconds * 1000)
        self._admit = redis.register_script(_ADMIT_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)
        self._renew = redis.register_script(_RENEW_LUA)
        self._live: dict[str, str] = {}
        self._renewer: asyncio.Task[None] | None = None
        #: subject -> [monotonic time, requests, tokens, slots left] after its last answer.
        self._headroom: dict[str, list[float]] = {}

    def headroom(self, principal: Principal, cost: int) -> bool:
        """True if the subject's last answer here still covers one more request of ``cost``.

        A hint, never a decision: :meth:`admit` still decides. Taking the hint books the
        request against it, so a burst cannot outrun what the last answer left.
        """
        entry = self._headroom.get(principal.subject)
        if entry is None or time.monotonic() - entry[0] > HEADROOM_SECONDS:
            return False
        limits = principal.limits
        if (
            (limits.requests_per_minute and entry[1] < 1)
            or (limits.tokens_per_minute and entry[2] < cost)
            or (limits.concurrent_streams and entry[3] < 1)
        ):
            return False
        entry[1] -= 1
        entry[2] -= cost
        entry[3] -= 1
        return True

    def _note_headroom(self, subject: str, answer: list[object]) -> None:
        if len(self._headroom) >= _HEADROOM_SUBJECTS and subject not in self._headroom:
            self._headroom.clear()
        left = [float(_int(answer[3])), float(_int(answer[4])), float(_int(answer[7]))]
        if answer[0] != 1:
            left = [0.0, 0.0, 0.0]
        self._headroom[subject] = [time.monotonic(), *left]

    async def admit(self, principal: Principal, *, cost: int, member: str) -> Admission:
        """Reserve a request, ``cost`` tokens and a slot, or raise the 429 to answer."""
        limits = principal.limits
        keys = _keys(principal.subject)
        answer = await self._admit(
            keys=list(keys),
            args=[
                limits.requests_per_minute,
                limits.tokens_per_minute,
                limits.concurrent_streams,
                cost,
                member,
                self._lease_ms,
            ],
        )
        headers = _headers(limits, answer)
        self._note_headroom(principal.subject, answer)
        if answer[0] != 1:
            which = answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1])
            raise _rejection(principal, which, _int(answer[2]), cost, headers)
        if limits.concurrent_streams:
            self._live[member] = keys[2]
        return Admission(principal.subject, member, limits, cost, headers)

    async def settle(self, admission: Admission, *, used_tokens: int) -> None:
        """Replace the reservation by ``used_tokens`` and free the slot (once)."""
        if admission.settled:
            return
        admission.settled = True
        self._live.pop(admission.member, None)
        limits = admission.limits
        if not limits.tokens_per_minute and not limits.concurrent_streams:
            return
        _, tok, conc = _keys(admission.subject)
        await self._settle(
            keys=[tok, conc],
            args=[limits.tokens_per_minute, admission.reserved - used_tokens, admission.member],
        )

    def start(self) -> None:
        """Start renewing the leases of this process's running requests."""
        self._renewer = asyncio.create_task(self._renew_forever(), name="gateway-lease-renewal")

    async def stop(self) -> None:
        """Stop renewing (leases of requests still running then lapse on their own)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer

    async def _renew_forever(self) -> None:
        interval = self._lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            live = list(self._live.items())
            if not live:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for member, key in live:
                        await self._renew(keys=[key], args=[member, self._lease_ms], client=pipe)
                    await pipe.execute()
            except Exception:
                logger.exception("renewing %d concurrency leases failed", len(live))
