"""The login limiter on the api's Redis: when a pair's delay starts."""

from __future__ import annotations

import os

import pytest
from arq.connections import ArqRedis

from chorus_api.domain.errors import RateLimitedError
from chorus_api.domain.login_limits import LoginLimiter


def limiter(redis: ArqRedis) -> LoginLimiter:
    return LoginLimiter(
        redis,
        window_seconds=900,
        free_failures=3,
        max_per_account=10,
        max_per_address=20,
        max_per_device=5,
    )


async def test_a_pairs_delay_counts_from_the_answer_not_the_admission(arq: ArqRedis) -> None:
    limits = limiter(arq)
    who = {"email": f"{os.urandom(4).hex()}@example.com", "address": "10.9.8.7", "device": None}
    attempts = [await limits.reserve(**who) for _ in range(3)]
    assert [a.failure for a in attempts] == [1, 2, 3]
    with pytest.raises(RateLimitedError) as parallel:  # held from the third admission
        await limits.reserve(**who)
    assert (parallel.value.scope, parallel.value.retry_after) == ("delay", 1)

    # The password checks outlast the delay the admission set (argon2 on a busy host):
    # its end is already past when the failures are answered.
    pair = attempts[0].keys[0]
    await arq.hset(pair, "next", 0)
    for attempt in attempts:
        await limits.failed(attempt)

    # The guesser learns of the third failure only now, and waits a second from now.
    with pytest.raises(RateLimitedError) as after:
        await limits.reserve(**who)
    assert (after.value.scope, after.value.retry_after) == ("delay", 1)
    assert await arq.hget(pair, "f") == b"3"  # the refusal counted nothing
