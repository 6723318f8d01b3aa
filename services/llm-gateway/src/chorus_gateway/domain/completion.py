"""A non-streamed completion: attempts with fallback (``fallback``), then the provider's body.

The whole call is bounded by the provider's ``total`` timeout (there is no first token
to time). The body is relayed byte for byte; it is parsed only to read ``usage`` (an
estimate from the returned text stands in when the provider sent none). A client that
disconnects while waiting interrupts the call, which closes the upstream connection.

``x-chorus-overhead-ms`` is the whole request's time minus the time spent waiting on
providers: what the gateway itself added. With tracing on, each attempt is a GenAI span,
as for streams (``relay``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.trace import Span

from chorus_common.tracing import child_tracer, record_failure
from chorus_gateway.domain.call import (
    CLIENT_CLOSED,
    COMPLETED,
    CUT_OFF,
    ERROR,
    Accounting,
    Call,
    Ending,
    end_chat_span,
    response_headers,
    start_attempt_span,
    usage_counts,
)
from chorus_gateway.domain.errors import GatewayError
from chorus_gateway.domain.fallback import Fallback, Refusal
from chorus_gateway.domain.interrupt import Interruptible
from chorus_gateway.domain.routing import Attempt, ProviderPool
from chorus_gateway.domain.token_estimate import estimate_completion_tokens
from chorus_gateway.domain.upstream import UpstreamFailure
from chorus_gateway.metrics import OVERHEAD

__all__ = ["Answer", "Completion"]


@dataclass(frozen=True, slots=True)
class Answer:
    """The JSON response to send: status, headers (content type aside), body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Completion(Interruptible):
    """One non-streamed completion."""

    def __init__(self, call: Call, *, pool: ProviderPool, accounting: Accounting) -> None:
        super().__init__()
        self.call = call
        self._pool = pool
        self._accounting = accounting
        self._upstream_wait = 0.0
        self._span: Span | None = None

    async def run(self) -> Answer | None:
        """The answer for the client; None when the client went away first."""
        self.bind()
        ending = Ending(status=500, outcome=ERROR)
        try:
            answer, ending = await self._run()
        finally:
            await self.close_interrupts()
            if self._span is not None:
                end_chat_span(self._span, ending)
            await self._accounting.finish(self.call, ending)
        return answer

    async def _run(self) -> tuple[Answer | None, Ending]:
        fallback = Fallback(self._pool, self.call.route, request_id=self.call.request_id)
        try:
            outcome = await fallback.first(self._send)
            await self.close_interrupts()
        except asyncio.CancelledError:
            attempt = fallback.current
            if attempt is not None:
                attempt.breaker.release()
            if not self.absorb():
                raise
            await self.close_interrupts()
            ending = Ending(status=CLIENT_CLOSED, outcome=CUT_OFF)
            if attempt is not None:
                ending.provider, ending.engaged, ending.estimated = attempt.provider, True, True
                ending.prompt_tokens = self.call.request.prompt_estimate
            return None, ending
        if isinstance(outcome, Refusal):
            return self._refuse(outcome.error, outcome.provider)
        return self._answer(outcome.attempt, outcome.result)

    async def _send(self, attempt: Attempt) -> bytes:
        tracing = child_tracer()
        if tracing is None:
            return await self._send_once(attempt)
        span = self._span = start_attempt_span(tracing, self.call, attempt)
        try:
            with trace.use_span(span):
                return await self._send_once(attempt)
        except BaseException as exc:
            self._span = None
            record_failure(span, exc)
            span.end()
            raise

    async def _send_once(self, attempt: Attempt) -> bytes:
        config = attempt.upstream.config
        body = self.call.request.upstream_body(
            attempt.target.upstream_model, config.max_tokens_field, self.call.default_max_tokens
        )
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(config.timeouts.total):
                content = await attempt.upstream.send(body, self.call.request.path)
        except TimeoutError:
            raise UpstreamFailure(
                "timeout_total",
                f"{attempt.provider} did not answer within {config.timeouts.total:g}s",
            ) from None
        except OSError as exc:
            raise UpstreamFailure("dropped", f"response broken: {type(exc).__name__}") from None
        finally:
            self._upstream_wait += time.perf_counter() - sent
        return content

    def _answer(self, attempt: Attempt, body: bytes) -> tuple[Answer, Ending]:
        ending = Ending(status=200, outcome=COMPLETED, provider=attempt.provider, engaged=True)
        usage, text_length = _read(body)
        if usage is not None:
            ending.prompt_tokens, ending.completion_tokens, ending.cached_tokens = usage_counts(
                usage
            )
        else:
            ending.prompt_tokens = self.call.request.prompt_estimate
            ending.completion_tokens = estimate_completion_tokens(text_length, 0)
            ending.estimated = True
        overhead = max(0.0, time.perf_counter() - self.call.started - self._upstream_wait)
        OVERHEAD.observe(overhead)
        extra = {
            "x-chorus-provider": attempt.provider,
            "x-chorus-overhead-ms": f"{overhead * 1000:.3f}",
        }
        headers = response_headers(self.call, extra)
        return Answer(200, headers, body), ending

    def _refuse(self, error: GatewayError, provider: str) -> tuple[Answer, Ending]:
        headers = response_headers(self.call, error.headers)
        return (
            Answer(error.status, headers, error.body()),
            Ending(status=error.status, outcome=ERROR, provider=provider),
        )


def _read(body: bytes) -> tuple[dict[str, Any] | None, int]:
    """The ``usage`` of a ``chat.completion`` body and the length of its text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, 0
    if not isinstance(parsed, dict):
        return None, 0
    usage = parsed.get("usage")
    length = 0
    for choice in parsed.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            length += len(content)
    return (usage if isinstance(usage, dict) else None), length
