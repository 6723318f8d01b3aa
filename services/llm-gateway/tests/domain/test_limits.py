"""The Lua limiter against a real Redis: exact admission, refunds, leases that lapse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from chorus_devstack.servers import RunningRedis
from chorus_gateway.domain.auth import Limits, Principal
from chorus_gateway.domain.limits import WINDOW_MS, Limiter, RateLimited, format_duration


@pytest.fixture
async def redis_client(gateway_redis: RunningRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(gateway_redis.url)
    yield client
    await client.aclose()


def principal(subject: str, rpm: int = 0, tpm: int = 0, slots: int = 0) -> Principal:
    return Principal(subject, None, Limits(rpm, tpm, slots))


async def test_concurrent_admissions_never_exceed_the_tokens(redis_client: Redis) -> None:
    limiter = Limiter(redis_client, lease_seconds=30)
    who = principal("user:t1", tpm=1000)

    async def one(i: int) -> bool:
        try:
            await limiter.admit(who, cost=70, member=f"r{i}")
        except RateLimited:
            return False
        return True

    admitted = await asyncio.gather(*(one(i) for i in range(50)))
    assert sum(admitted) == 1000 // 70


async def test_settle_refunds_the_unused_reservation(redis_client: Redis) -> None:
    limiter = Limiter(redis_client, lease_seconds=30)
    who = principal("user:t2", tpm=1000)
    first = await limiter.admit(who, cost=900, member="a")
    with pytest.raises(RateLimited) as raised:
        await limiter.admit(who, cost=900, member="b")
    assert raised.value.limit == "tokens"
    await limiter.settle(first, used_tokens=100)
    second = await limiter.admit(who, cost=800, member="c")
    assert int(second.headers["x-ratelimit-remaining-tokens"]) in range(100, 102)


async def test_a_lease_of_a_dead_process_lapses(redis_client: Redis) -> None:
    who = principal("user:t3", slots=1)
    dead = Limiter(redis_client, lease_seconds=0.3)  # never settles, never renews
    await dead.admit(who, cost=1, member="lost")
    alive = Limiter(redis_client, lease_seconds=30)
    with pytest.raises(RateLimited) as raised:
        await alive.admit(who, cost=1, member="next")
    assert raised.value.limit == "concurrency"
    deadline = time.monotonic() + 5
    while True:
        try:
            await alive.admit(who, cost=1, member="next")
            break
        except RateLimited:
            assert time.monotonic() < deadline, "the lease never lapsed"
            await asyncio.sleep(0.05)


async def test_running_requests_keep_their_lease(redis_client: Redis) -> None:
    who = principal("user:t4", slots=1)
    limiter = Limiter(redis_client, lease_seconds=3)
    limiter.start()
    try:
        admission = await limiter.admit(who, cost=1, member="long")
        leases = "chorus:gw:rl:{user:t4}:conc"
        first_expiry = await redis_client.zscore(leases, "long")
        assert first_expiry is not None
        # Wait (by Redis's clock, the one leases are judged by) until the first lease is
        # over: only a renewal can still hold the slot then.
        while await _redis_ms(redis_client) <= first_expiry:
            await asyncio.sleep(0.1)
        renewed = await redis_client.zscore(leases, "long")
        assert renewed is not None
        assert renewed > first_expiry
        with pytest.raises(RateLimited) as refused:
            await limiter.admit(who, cost=1, member="other")
        assert refused.value.limit == "concurrency"
        await limiter.settle(admission, used_tokens=1)
        await limiter.admit(who, cost=1, member="other")
    finally:
        await limiter.stop()


async def _redis_ms(redis_client: Redis) -> float:
    seconds, micros = await redis_client.time()
    return seconds * 1000 + micros / 1000


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"),
        (120, "120ms"),
        (1000, "1s"),
        (1001, "2s"),
        (360_000, "6m0s"),
        (3_723_000, "1h2m3s"),
    ],
)
def test_reset_durations_in_openais_format(ms: int, text: str) -> None:
    assert format_duration(ms) == text


async def test_headroom_is_what_the_last_answer_left_minus_what_was_taken(
    redis_client: Redis,
) -> None:
    limiter = Limiter(redis_client, lease_seconds=30)
    who = principal("user:t5", rpm=3, tpm=1000, slots=10)
    assert not limiter.headroom(who, cost=100)  # never admitted here: no hint
    await limiter.admit(who, cost=100, member="a")  # leaves 2 requests, 900 tokens
    assert not limiter.headroom(who, cost=901)
    assert limiter.headroom(who, cost=100)
    assert limiter.headroom(who, cost=100)
    assert not limiter.headroom(who, cost=100)  # both requests left are taken


async def test_no_headroom_after_a_refusal(redis_client: Redis) -> None:
    limiter = Limiter(redis_client, lease_seconds=30)
    who = principal("user:t6", rpm=10, slots=1)
    await limiter.admit(who, cost=1, member="a")
    assert not limiter.headroom(who, cost=1)  # the only slot is in use
    with pytest.raises(RateLimited):
        await limiter.admit(who, cost=1, member="b")
    assert not limiter.headroom(who, cost=1)


async def test_buckets_refill_over_the_window(redis_client: Redis) -> None:
    # Two requests a window: after one, the next is a full token away — half the window
    # for a bucket of two; an empty bucket of one is the whole window away.
    limiter = Limiter(redis_client, lease_seconds=30)
    admitted = await limiter.admit(principal("user:w1", rpm=2), cost=1, member="a")
    assert admitted.headers["x-ratelimit-reset-requests"] == format_duration(WINDOW_MS // 2)
    lone = principal("user:w2", rpm=1)
    await limiter.admit(lone, cost=1, member="b")
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(lone, cost=1, member="c")
    retry_after = int(refused.value.headers["retry-after"])
    assert WINDOW_MS / 1000 - 2 <= retry_after <= WINDOW_MS / 1000
