"""The per-connection token bucket."""

from __future__ import annotations

from chorus_realtime.domain.ratelimit import TokenBucket


def test_burst_then_refuse() -> None:
    bucket = TokenBucket(rate=0.001, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=1000.0, burst=1)
    assert bucket.take()
    bucket._stamp -= 0.01  # as if 10 ms passed
    assert bucket.take()
