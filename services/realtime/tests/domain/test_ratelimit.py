"""The per-connection token bucket."""

from __future__ import annotations

from chorus_realtime.domain.ratelimit import TokenBucket


def test_burst_then_refuse() -> None:
    bucket = TokenBucket(rate=0.001, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_refills_at_the_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=1000.0, burst=1, clock=lambda: now[0])
    assert bucket.take()
    assert not bucket.take()
    now[0] += 0.01  # 10 ms later: ten tokens' worth, capped at the burst of one
    assert bucket.take()
    assert not bucket.take()
