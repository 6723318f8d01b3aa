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

**End users of a service key.** A service calling for someone — the worker answering
``@assistant`` for a room member — names that person in OpenAI's ``user`` field. Such a
call is admitted against the key's limits *and* against that end user's own share of the
key (the per-user defaults, or the key's ``end_user_*`` overrides), in the same script and
the same Redis slot: one member of a room cannot spend the whole key, and the assistant
asked by many people cannot exceed the key either.

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
from datetime import UTC, datetime

from redis.asyncio import Redis

from chorus_common.virtual_keys import Budget, spend_counter
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

# KEYS: per subject, its requests bucket, tokens bucket and leases; then one spend
# counter per budget. ARGV: cost, lease member, lease ms, number of subjects, then per
# subject rpm, tpm, concurrency; then the cost in micros and per budget its limit and the
# counter's expiry (ms from now; 0: none). Every subject and budget must have room before
# any is charged. Returns {admitted, refusing subject or budget (1-based, budgets after
# subjects; 0 when admitted), limit, retry ms, then per subject: requests left, tokens
# left, requests reset ms, tokens reset ms, slots left; then per budget: micros left}.
_ADMIT_LUA = (
    _LEVEL_LUA
    + """
local cost, lease = tonumber(ARGV[1]), tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local micros_at = 5 + n * 3
local micros = tonumber(ARGV[micros_at])
local m = #KEYS - n * 3
local state = {}
local spent = {}
for b = 1, m do
  spent[b] = tonumber(redis.call('GET', KEYS[n * 3 + b]) or '0')
end
for s = 1, n do
  local k, a = (s - 1) * 3, 4 + (s - 1) * 3
  local rpm, tpm, slots = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local req = rpm > 0 and level(KEYS[k + 1], rpm, now) or 0
  local tok = tpm > 0 and level(KEYS[k + 2], tpm, now) or 0
  local active = 0
  if slots > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now)
    active = redis.call('ZCARD', KEYS[k + 3])
  end
  state[s] = {rpm, tpm, slots, req, tok, active}
end
local function answer(ok, who, which, retry)
  local out = {ok, who, which, retry}
  for s = 1, n do
    local rpm, tpm, slots, req, tok, active = unpack(state[s])
    table.insert(out, math.floor(req))
    table.insert(out, math.floor(tok))
    table.insert(out, reset_ms(req, rpm))
    table.insert(out, reset_ms(tok, tpm))
    table.insert(out, slots - active)
  end
  for b = 1, m do
    table.insert(out, tonumber(ARGV[micros_at + 2 * b - 1]) - spent[b])
  end
  return out
end
for s = 1, n do
  local rpm, tpm, slots, req, tok, active = unpack(state[s])
  if rpm > 0 and req < 1 then
    return answer(0, s, 'requests', math.ceil((1 - req) * WINDOW / rpm))
  end
  if tpm > 0 and cost > tpm then
    return answer(0, s, 'tokens_too_large', 0)
  end
  if tpm > 0 and tok < cost then
    return answer(0, s, 'tokens', math.ceil((cost - tok) * WINDOW / tpm))
  end
  if slots > 0 and active >= slots then
    return answer(0, s, 'concurrency', 1000)
  end
end
for b = 1, m do
  local limit, ttl = tonumber(ARGV[micros_at + 2 * b - 1]), tonumber(ARGV[micros_at + 2 * b])
  if spent[b] + micros > limit then
    return answer(0, n + b, 'budget', ttl)
  end
end
for b = 1, m do
  local ttl = tonumber(ARGV[micros_at + 2 * b])
  spent[b] = redis.call('INCRBY', KEYS[n * 3 + b], micros)
  if ttl > 0 then redis.call('PEXPIRE', KEYS[n * 3 + b], ttl) end
end
for s = 1, n do
  local k = (s - 1) * 3
  local rpm, tpm, slots, req, tok, active = unpack(state[s])
  if rpm > 0 then
    req = req - 1
    store(KEYS[k + 1], req, rpm, now)
  end
  if tpm > 0 then
    tok = tok - cost
    store(KEYS[k + 2], tok, tpm, now)
  end
  if slots > 0 then
    redis.call('ZADD', KEYS[k + 3], now + lease, ARGV[2])
    redis.call('PEXPIRE', KEYS[k + 3], lease + 1000)
    active = active + 1
  end
  state[s] = {rpm, tpm, slots, req, tok, active}
end
return answer(1, 0, 'ok', 0)
"""
)

# KEYS: per subject, its tokens bucket and leases; then the budgets' spend counters.
# ARGV: tokens to give back (negative: to charge), lease member, number of subjects, then
# per subject tpm, then micros to give back. Replaces a reservation by what was used and
# frees the slots. A counter that expired meanwhile (its period is over) stays gone.
_SETTLE_LUA = (
    _LEVEL_LUA
    + """
local back = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local micros = tonumber(ARGV[4 + n])
for b = n * 2 + 1, #KEYS do
  if micros ~= 0 and redis.call('EXISTS', KEYS[b]) == 1 then
    redis.call('DECRBY', KEYS[b], micros)
  end
end
for s = 1, n do
  local tpm = tonumber(ARGV[3 + s])
  if tpm > 0 and back ~= 0 then
    local l = level(KEYS[2 * s - 1], tpm, now) + back
    if l > tpm then l = tpm end
    store(KEYS[2 * s - 1], l, tpm, now)
  end
  redis.call('ZREM', KEYS[2 * s], ARGV[2])
end
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


def _keys(subject: str, end_user: str | None = None, tag: str = "") -> tuple[str, str, str]:
    # The hash tag keeps a subject's keys in one slot, as Redis Cluster requires; an end
    # user's keys share their key's slot, so one script can check both. A virtual key's
    # counters are tagged with its owner, as are the budgets that apply to it.
    base = f"chorus:gw:rl:{{{subject}}}"
    if tag and tag != subject:
        base = f"chorus:gw:rl:{{{tag}}}:{subject}"
    if end_user is not None:
        base += f":end:{end_user}"
    return f"{base}:req", f"{base}:tok", f"{base}:conc"


@dataclass(frozen=True, slots=True)
class _Bucket:
    """One set of limits checked for a request: its name in messages, keys and limits."""

    name: str
    keys: tuple[str, str, str]
    limits: Limits
    #: The metric's ``limit`` label prefix: "" for a caller, ``end_user_`` for an end user.
    label: str = ""


@dataclass(slots=True)
class Admission:
    """An admitted request's reservation, and the headers describing the limits."""

    subject: str
    member: str
    limits: Limits
    reserved: int
    headers: dict[str, str]
    settled: bool = field(default=False)
    #: Every set of limits the request was admitted against (the caller's, an end user's).
    buckets: tuple[_Bucket, ...] = ()
    #: The spend counters charged (one per budget) and the micros reserved on each.
    spend_keys: tuple[str, ...] = ()
    reserved_micros: int = 0


class RateLimited(GatewayError):
    """A 429 from the gateway's own limits; ``limit`` is requests, tokens or concurrency
    (``end_user_…`` when it was the end user's share of a service key that ran out)."""

    def __init__(
        self,
        limit: str,
        message: str,
        *,
        error_type: str,
        headers: dict[str, str],
        code: str = "rate_limit_exceeded",
    ):
        super().__init__(429, message, error_type=error_type, code=code, headers=headers)
        self.limit = limit


def _budget_refusal(budget: Budget, micros: int, left: int, retry_s: int) -> RateLimited:
    what = {"day": "today", "month": "this month", "total": "in total"}[budget.period]
    message = (
        f"Budget exceeded for {budget.scope}: {max(left, 0) / 1e6:.6f} left {what} of "
        f"{budget.limit_micros / 1e6:.6f}, this request may cost up to {micros / 1e6:.6f} "
        "(its prompt and max_tokens at the model's price). Lower max_tokens, or raise the "
        "budget."
    )
    headers = {}
    if retry_s:
        headers = {"retry-after": str(retry_s), "retry-after-ms": str(retry_s * 1000)}
    return RateLimited(
        "budget", message, error_type="insufficient_quota", headers=headers, code="budget_exceeded"
    )


#: Numbers the admission script returns per set of limits, after its four leading ones.
_PER_BUCKET = 5


def _headers(limits: Limits, answer: list[object], index: int = 0) -> dict[str, str]:
    at = 4 + _PER_BUCKET * index
    headers: dict[str, str] = {}
    if limits.requests_per_minute:
        headers["x-ratelimit-limit-requests"] = str(limits.requests_per_minute)
        headers["x-ratelimit-remaining-requests"] = str(max(0, _int(answer[at])))
        headers["x-ratelimit-reset-requests"] = format_duration(_int(answer[at + 2]))
    if limits.tokens_per_minute:
        headers["x-ratelimit-limit-tokens"] = str(limits.tokens_per_minute)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, _int(answer[at + 1])))
        headers["x-ratelimit-reset-tokens"] = format_duration(_int(answer[at + 3]))
    return headers


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _rejection(
    bucket: _Bucket, which: str, retry_ms: int, cost: int, headers: dict[str, str]
) -> RateLimited:
    limits, subject = bucket.limits, bucket.name
    retry_s = max(1, math.ceil(retry_ms / 1000))
    if which == "tokens_too_large":
        message = (
            f"Request too large for {subject} on tokens per min (TPM): "
            f"Limit {limits.tokens_per_minute}, Requested {cost}. Lower max_tokens or "
            "shorten the messages."
        )
        return RateLimited(bucket.label + "tokens", message, error_type="tokens", headers=headers)
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
        bucket.label + which,
        f"Rate limit reached for {subject} on {what}. Please try again in {retry_ms / 1000:g}s.",
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
        #: lease member -> the lease sets it holds a slot in.
        self._live: dict[str, list[str]] = {}
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
        left = [float(_int(answer[4])), float(_int(answer[5])), float(_int(answer[8]))]
        if answer[0] != 1:
            left = [0.0, 0.0, 0.0]
        self._headroom[subject] = [time.monotonic(), *left]

    async def admit(
        self,
        principal: Principal,
        *,
        cost: int,
        member: str,
        end_user: str | None = None,
        micros: int = 0,
    ) -> Admission:
        """Reserve a request, ``cost`` tokens, a slot and ``micros`` of every budget of the
        caller, or raise the 429 to answer.

        ``end_user`` (a service key's call made for someone, OpenAI's ``user``) is also
        admitted against that person's share of the key (``Principal.end_user_limits``),
        in the same script: both have room, or neither is charged. So are the budgets: a
        request that would take any of them past its limit is refused before anything is
        charged (429 ``budget_exceeded``).
        """
        tag = principal.tag
        buckets = [_Bucket(principal.subject, _keys(principal.subject, tag=tag), principal.limits)]
        if principal.owner is not None and principal.owner_limits is not None:
            # Every key of one owner (and a user's own token) share the owner's limits.
            buckets.append(
                _Bucket(principal.owner, _keys(principal.owner), principal.owner_limits, "owner_")
            )
        share = principal.end_user_limits if end_user is not None else None
        if share is not None and end_user is not None:
            buckets.append(
                _Bucket(
                    f"{principal.subject} (user {end_user})",
                    _keys(principal.subject, end_user, tag),
                    share,
                    "end_user_",
                )
            )
        args: list[str | int | float] = [cost, member, self._lease_ms, len(buckets)]
        for bucket in buckets:
            limits = bucket.limits
            args += [
                limits.requests_per_minute,
                limits.tokens_per_minute,
                limits.concurrent_streams,
            ]
        keys = [k for b in buckets for k in b.keys]
        spend_keys: list[str] = []
        periods: list[int] = []
        if principal.budgets:
            args.append(micros)
            now = datetime.now(UTC)
            for budget in principal.budgets:
                key, ttl_ms, period_left = spend_counter(tag, budget, now)
                spend_keys.append(key)
                periods.append(period_left)
                args += [budget.limit_micros, ttl_ms]
        else:
            args.append(0)
        answer = await self._admit(keys=keys + spend_keys, args=args)
        if len(buckets) == 1 and not spend_keys:
            self._note_headroom(principal.subject, answer)
        if answer[0] != 1:
            index = _int(answer[1]) - 1
            if index >= len(buckets):
                b = index - len(buckets)
                left = _int(answer[4 + _PER_BUCKET * len(buckets) + b])
                raise _budget_refusal(principal.budgets[b], micros, left, periods[b])
            refusing = buckets[index]
            which = answer[2].decode() if isinstance(answer[2], bytes) else str(answer[2])
            headers = _headers(refusing.limits, answer, index)
            raise _rejection(refusing, which, _int(answer[3]), cost, headers)
        # The tighter share speaks for the request in the headers: what it can do next (a
        # virtual key's own limits are at most its owner's).
        index = 0 if principal.owner is not None else len(buckets) - 1
        headers = _headers(buckets[index].limits, answer, index)
        leases = [b.keys[2] for b in buckets if b.limits.concurrent_streams]
        if leases:
            self._live[member] = leases
        return Admission(
            principal.subject,
            member,
            principal.limits,
            cost,
            headers,
            buckets=tuple(buckets),
            spend_keys=tuple(spend_keys),
            reserved_micros=micros if spend_keys else 0,
        )

    async def settle(self, admission: Admission, *, used_tokens: int, used_micros: int = 0) -> None:
        """Replace the reservation by ``used_tokens`` and ``used_micros`` (what the call
        really cost) and free the slots (once)."""
        if admission.settled:
            return
        admission.settled = True
        self._live.pop(admission.member, None)
        buckets = [
            b
            for b in admission.buckets
            if b.limits.tokens_per_minute or b.limits.concurrent_streams
        ]
        if not buckets and not admission.spend_keys:
            return
        await self._settle(
            keys=[k for b in buckets for k in (b.keys[1], b.keys[2])] + list(admission.spend_keys),
            args=[
                admission.reserved - used_tokens,
                admission.member,
                len(buckets),
                *(b.limits.tokens_per_minute for b in buckets),
                admission.reserved_micros - used_micros,
            ],
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
            live = [(member, key) for member, keys in self._live.items() for key in keys]
            if not live:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for member, key in live:
                        await self._renew(keys=[key], args=[member, self._lease_ms], client=pipe)
                    await pipe.execute()
            except Exception:
                logger.exception("renewing %d concurrency leases failed", len(live))
