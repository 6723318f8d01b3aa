"""Backoff: jittered, exponential, capped, reset by a success."""

from __future__ import annotations

import pytest

from chorus_client import Backoff


def test_delays_are_jittered_below_a_doubling_bound_up_to_the_cap() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert all(d <= 0.1 * 2**i for i, d in enumerate(delays[:4]))
    assert len(set(delays)) > 100, "every client waits a different time"
    assert backoff.attempt == 200


def test_a_success_starts_over_from_the_base() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 0.1


@pytest.mark.parametrize(("base", "cap"), [(0, 1.0), (-1, 1.0), (2.0, 1.0)])
def test_nonsense_is_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base=base, cap=cap)
