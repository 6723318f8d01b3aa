"""Which provider serves an attempt: priority, weights, circuit breakers, attempt budget.

For each request the model's providers are ordered by priority, and by a weighted random
draw within a priority (weights 3:1 send about 75% of first attempts to the first). The
attempts walk that order, skipping providers whose circuit is open, and start over from
the top when the order is exhausted and attempts remain (``GATEWAY_MAX_ATTEMPTS``), so a
single-provider model is retried on its provider. If every provider's circuit is open
the request fails at once with 503 and a ``retry-after`` for the earliest probe.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial

from chorus_gateway.domain.breaker import CircuitBreaker
from chorus_gateway.domain.errors import no_provider_available
from chorus_gateway.domain.providers import ModelRoute, Target
from chorus_gateway.domain.upstream import Upstream
from chorus_gateway.metrics import PROVIDER_CIRCUIT_OPEN

__all__ = ["Attempt", "ProviderPool"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try: the provider, its client and breaker, and the model id it knows."""

    target: Target
    upstream: Upstream
    breaker: CircuitBreaker

    @property
    def provider(self) -> str:
        """The provider's name."""
        return self.target.provider


def _report_circuit(provider: str, is_open: bool) -> None:
    PROVIDER_CIRCUIT_OPEN.labels(provider).set(1 if is_open else 0)


class ProviderPool:
    """Every provider's client and breaker."""

    def __init__(
        self,
        upstreams: Mapping[str, Upstream],
        *,
        max_attempts: int,
        breaker_failures: int,
        breaker_cooldown: float,
        rng: random.Random | None = None,
    ) -> None:
        self.upstreams = dict(upstreams)
        self.max_attempts = max_attempts
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self.breakers: dict[str, CircuitBreaker] = {}
        for name in self.upstreams:
            PROVIDER_CIRCUIT_OPEN.labels(name).set(0)
            self.breakers[name] = CircuitBreaker(
                failures=breaker_failures,
                cooldown=breaker_cooldown,
                on_change=partial(_report_circuit, name),
            )

    def attempts(self, route: ModelRoute) -> Iterator[Attempt]:
        """Attempts for ``route`` in order; raises 503 if no provider may be tried at all."""
        order = route.ordered(self._rng)
        made = 0
        while made < self.max_attempts:
            progressed = False
            for target in order:
                breaker = self.breakers[target.provider]
                if not breaker.allow():
                    continue
                progressed = True
                made += 1
                yield Attempt(target, self.upstreams[target.provider], breaker)
                if made >= self.max_attempts:
                    return
            if not progressed:
                if made == 0:
                    wait = min(self.breakers[t.provider].retry_after() for t in order)
                    raise no_provider_available(route.requested, wait)
                return

    async def aclose(self) -> None:
        """Close every provider's connection pool."""
        for upstream in self.upstreams.values():
            await upstream.aclose()
