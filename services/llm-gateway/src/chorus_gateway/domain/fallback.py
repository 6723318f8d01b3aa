"""The attempts of one call: providers in order until one answers, and what a failure says.

Streamed and non-streamed calls differ in what an attempt does (open a stream and await
its first chunk, or send and read the whole body) but not in how attempts follow each
other, which :class:`Fallback` does for both:

- the attempts are :meth:`ProviderPool.attempts` (priority, weights, circuit breakers,
  the attempt budget); each fallback from one provider to the next is counted;
- an attempt that fails (:class:`UpstreamFailure`) is counted by kind and feeds its
  provider's breaker, and the next attempt is made;
- a client error (the provider refused the request itself: 400, 413, 422) ends the call
  at once, relayed as it is — no other provider would accept it either — and does not
  count against the provider;
- when no attempt succeeds, the last failure decides what the client is told
  (:func:`failure_error`); when no provider may be tried at all (every circuit open) the
  pool's 503 is.

What a provider says when it fails — its error body, the connection error with its host
and port — is logged with the request id (``attempt on <provider> failed (<kind>): …``)
and never relayed: the client is told in the gateway's own words. Only a refusal of the
request itself reaches the client as the provider worded it, and only as OpenAI's error
object, since it is about what the client sent.

The attempt under way is :attr:`Fallback.current`, so a caller that is cancelled mid-way
(the client left) can release its provider's half-open probe and bill what was sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import orjson

from chorus_gateway.domain.errors import GatewayError, bad_gateway, gateway_timeout
from chorus_gateway.domain.providers import ModelRoute
from chorus_gateway.domain.routing import Attempt, ProviderPool
from chorus_gateway.domain.upstream import UpstreamFailure
from chorus_gateway.metrics import FALLBACKS, NO_PROVIDER, UPSTREAM_ERRORS

__all__ = ["Answered", "Fallback", "Refusal", "client_error", "failure_error"]

T = TypeVar("T")

logger = logging.getLogger("chorus.gateway.fallback")


@dataclass(frozen=True, slots=True)
class Answered(Generic[T]):
    """An attempt that succeeded, and what it produced."""

    attempt: Attempt
    result: T


@dataclass(frozen=True, slots=True)
class Refusal:
    """What to tell the client instead, and the provider it is accounted to."""

    error: GatewayError
    provider: str


class Fallback:
    """Tries ``route``'s providers in order until one answers."""

    def __init__(self, pool: ProviderPool, route: ModelRoute, *, request_id: str = "") -> None:
        self._pool = pool
        self._route = route
        self._request_id = request_id
        #: The attempt under way (after the loop: the last one made), or None.
        self.current: Attempt | None = None

    async def first(self, attempt_one: Callable[[Attempt], Awaitable[T]]) -> Answered[T] | Refusal:
        """Run ``attempt_one`` on each attempt until one returns; a :class:`Refusal` if none does.

        ``attempt_one`` raises :class:`UpstreamFailure` when its provider failed.
        """
        failure: UpstreamFailure | None = None
        previous: str | None = None
        try:
            for attempt in self._pool.attempts(self._route):
                self.current = attempt
                if previous is not None:
                    FALLBACKS.labels(previous, attempt.provider).inc()
                previous = attempt.provider
                try:
                    result = await attempt_one(attempt)
                except UpstreamFailure as exc:
                    UPSTREAM_ERRORS.labels(attempt.provider, exc.kind).inc()
                    logger.warning(
                        "attempt on %s failed (%s): %s",
                        attempt.provider,
                        exc.kind,
                        exc.message,
                        extra={"usage_request_id": self._request_id, "provider": attempt.provider},
                    )
                    if exc.client_error:
                        attempt.breaker.success()
                        return Refusal(client_error(exc), attempt.provider)
                    attempt.breaker.failure()
                    failure = exc
                    continue
                attempt.breaker.success()
                return Answered(attempt, result)
        except GatewayError as exc:
            return Refusal(exc, NO_PROVIDER)
        return Refusal(failure_error(failure, self._route.requested), previous or NO_PROVIDER)


def failure_error(failure: UpstreamFailure | None, model: str) -> GatewayError:
    """What the client is told when no attempt succeeded: our words, never the provider's
    (those were logged when the attempt failed)."""
    if failure is None:
        return bad_gateway(f"No provider could serve `{model}`.")
    if failure.timeout:
        return gateway_timeout(f"No provider of `{model}` answered in time.")
    if failure.status == 429:
        seconds = failure.retry_after or "1"
        return GatewayError(
            429,
            f"The providers of `{model}` are rate limiting; retry in {seconds}s.",
            error_type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": seconds},
        )
    return bad_gateway(f"The provider of `{model}` failed; try again later.")


def client_error(failure: UpstreamFailure) -> GatewayError:
    """The provider's refusal of the request itself, relayed in OpenAI's shape.

    Only OpenAI's error object is relayed; any other body (an HTML page of some proxy in
    front of the provider) is replaced by our own words.
    """
    try:
        body = orjson.loads(failure.body or b"")
        inner = body["error"]
        return GatewayError(
            failure.status or 400,
            str(inner.get("message") or failure.message),
            error_type=str(inner.get("type") or "invalid_request_error"),
            code=inner.get("code"),
            param=inner.get("param"),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return GatewayError(
            failure.status or 400,
            "The provider refused the request as invalid.",
            error_type="invalid_request_error",
        )
