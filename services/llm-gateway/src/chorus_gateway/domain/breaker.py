"""Per-provider circuit breakers: stop sending traffic to a provider that keeps failing.

Closed → after ``failures`` consecutive failures → open for ``cooldown`` seconds (the
provider is skipped; its gauge ``chorus_gateway_provider_circuit_open`` is 1) → half-open:
one probe request is let through; its success closes the circuit, its failure opens it
for another cooldown. Each replica keeps its own breakers, as Envoy's outlier detection
does: a replica learns of an outage from its own traffic within ``failures`` requests.

A failure is anything that makes the gateway try another provider: connection errors,
timeouts, 5xx, 429, an error before the first token. A client's own mistake (a 400 from
the provider) and a client disconnect are not failures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One provider's breaker; ``on_change(open)`` is told when it opens or closes."""

    def __init__(
        self,
        *,
        failures: int,
        cooldown: float,
        on_change: Callable[[bool], None] = lambda _open: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._cooldown = cooldown
        self._on_change = on_change
        self._clock = clock
        self._failures = 0
        self._opened_until = 0.0
        self._probing = False
        self.state = BreakerState.CLOSED

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        return max(0.0, self._opened_until - self._clock())

    def allow(self) -> bool:
        """Whether a request may go to this provider now (takes the probe when half-open)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self._clock() < self._opened_until:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        """The provider answered well."""
        self._failures = 0
        if self.state is not BreakerState.CLOSED:
            self.state = BreakerState.CLOSED
            self._probing = False
            self._on_change(False)

    def failure(self) -> None:
        """The provider failed a request."""
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            was_open = self.state is not BreakerState.CLOSED
            self.state = BreakerState.OPEN
            self._probing = False
            self._opened_until = self._clock() + self._cooldown
            if not was_open:
                self._on_change(True)

    def release(self) -> None:
        """A request let through as the probe ended neither well nor badly (cancelled)."""
        if self.state is BreakerState.HALF_OPEN:
            self._probing = False
