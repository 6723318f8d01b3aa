"""The circuit breaker's states, on a controlled clock."""

from __future__ import annotations

from chorus_gateway.domain.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_then_probes_once() -> None:
    clock, changes = Clock(), []
    breaker = CircuitBreaker(failures=2, cooldown=10, on_change=changes.append, clock=clock)
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == 10
    clock.now = 10
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one
    breaker.success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [True, False]


def test_a_failed_probe_opens_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=5, clock=clock)
    breaker.failure()
    clock.now = 5
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == 5
