"""An admitted call, how it ended, and the bookkeeping every ending gets.

Whatever happens to a call — completed, cut off by the client, failed before or after
its first byte — :meth:`Accounting.finish` runs exactly once: the limiter's reservation
is replaced by the tokens used (and the concurrency slot freed), a usage record is
handed to the recorder when a provider was engaged, and the metrics are counted.

With tracing on, the attempt that served a call is a GenAI span
(:func:`start_attempt_span`), closed with the call's usage and outcome
(:func:`end_chat_span`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from opentelemetry.trace import Span, StatusCode, Tracer

from chorus_common.genai_tracing import finished, start_chat_span
from chorus_gateway.domain.auth import Principal
from chorus_gateway.domain.chat_request import ChatRequest
from chorus_gateway.domain.limits import Admission, Limiter
from chorus_gateway.domain.pricing import cost_micros
from chorus_gateway.domain.providers import ModelRoute
from chorus_gateway.domain.routing import Attempt
from chorus_gateway.domain.usage import UsageRecord, UsageRecorder
from chorus_gateway.metrics import NO_PROVIDER, REQUESTS, SPEND, TIME_PER_OUTPUT_TOKEN, TOKENS

__all__ = [
    "Accounting",
    "Call",
    "Ending",
    "Headers",
    "end_chat_span",
    "response_headers",
    "start_attempt_span",
    "usage_counts",
]

#: Response headers as ASGI carries them.
Headers = list[tuple[bytes, bytes]]

logger = logging.getLogger("chorus.gateway.call")

COMPLETED = "completed"
CUT_OFF = "cut_off"
ERROR = "error"
#: nginx's code for "the client closed the connection", used in request metrics.
CLIENT_CLOSED = 499


@dataclass(slots=True)
class Call:
    """A request that passed authentication and validation, and admission or is passing it.

    ``admission`` is None while ``admitting`` — the admission run concurrently with the
    first upstream call — has not answered (see ``Gateway.prepare``).
    """

    request_id: str
    principal: Principal
    request: ChatRequest
    route: ModelRoute
    admission: Admission | None
    #: The bounded metrics label of the requested model.
    label: str
    #: ``time.perf_counter()`` when the request arrived.
    started: float
    #: Completion cap sent upstream when the client set none.
    default_max_tokens: int
    #: The admission still running (raises the 429, or the Redis error, when it fails).
    admitting: asyncio.Task[Admission] | None = None

    async def admitted(self) -> Admission:
        """The admission, waiting for it if it is still running."""
        if self.admission is None:
            assert self.admitting is not None
            self.admission = await self.admitting
        return self.admission


def usage_counts(usage: dict[str, object]) -> tuple[int, int, int]:
    """``(prompt, completion, cached prompt)`` tokens of a provider's ``usage`` object —
    chat's and legacy completions' ``prompt_tokens``/``completion_tokens``, embeddings'
    ``prompt_tokens`` alone, or responses' ``input_tokens``/``output_tokens``."""
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return _count(prompt), _count(completion), _count(cached)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def response_headers(call: Call, extra: dict[str, str]) -> Headers:
    """The rate-limit headers of ``call`` plus ``extra``, encoded."""
    limits = call.admission.headers if call.admission is not None else {}
    merged = {**limits, **extra}
    return [(k.encode(), v.encode()) for k, v in merged.items()]


@dataclass(slots=True)
class Ending:
    """How a call ended."""

    status: int
    outcome: str
    provider: str = NO_PROVIDER
    #: A provider received the request (so tokens may have been spent).
    engaged: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Prompt tokens the provider served from its cache (priced at the cached price).
    cached_tokens: int = 0
    estimated: bool = False
    #: Seconds from the first chunk to the end, for time-per-output-token.
    streaming_seconds: float | None = None
    details: dict[str, str] = field(default_factory=dict)


class Accounting:
    """Settles limits, records usage and counts metrics when a call ends."""

    def __init__(self, limiter: Limiter, recorder: UsageRecorder) -> None:
        self._limiter = limiter
        self._recorder = recorder

    async def finish(self, call: Call, ending: Ending) -> None:
        """Book ``ending`` of ``call`` (never raises: the client's answer is already out)."""
        used = ending.prompt_tokens + ending.completion_tokens
        micros = 0
        REQUESTS.labels(call.label, ending.provider, str(ending.status)).inc()
        if ending.engaged:
            price = next(
                (t.price for t in call.route.targets if t.provider == ending.provider), None
            )
            micros = cost_micros(
                price,
                prompt_tokens=ending.prompt_tokens,
                completion_tokens=ending.completion_tokens,
                cached_tokens=ending.cached_tokens,
            )
            if micros:
                SPEND.labels(call.label, ending.provider).inc(micros)
            TOKENS.labels("prompt", call.label).inc(ending.prompt_tokens)
            TOKENS.labels("completion", call.label).inc(ending.completion_tokens)
            if ending.streaming_seconds is not None and ending.completion_tokens > 1:
                TIME_PER_OUTPUT_TOKEN.labels(call.label, ending.provider).observe(
                    ending.streaming_seconds / (ending.completion_tokens - 1)
                )
            self._recorder.record(
                UsageRecord(
                    request_id=call.request_id,
                    subject=call.principal.subject,
                    user_id=call.principal.billed_user(call.request.end_user),
                    model=call.route.model,
                    provider=ending.provider,
                    prompt_tokens=ending.prompt_tokens,
                    completion_tokens=ending.completion_tokens,
                    estimated=ending.estimated,
                    outcome=ending.outcome,
                    key_id=call.principal.key_id,
                    team_id=call.principal.team_id,
                    cost_micros=micros,
                    cached_tokens=ending.cached_tokens,
                )
            )
        try:
            # An admission still running when the call ended (the client left first) is
            # awaited, so what it reserved is given back all the same.
            admission = await call.admitted()
        except Exception:
            admission = None  # refused or failed: nothing was reserved
        try:
            if admission is not None:
                await self._limiter.settle(admission, used_tokens=used, used_micros=micros)
        except Exception:
            logger.exception("settling the rate-limit reservation of %s failed", call.request_id)
        logger.debug(
            "call ended",
            extra={
                "usage_request_id": call.request_id,
                "model": call.route.model,
                "provider": ending.provider,
                "status": ending.status,
                "outcome": ending.outcome,
                "prompt_tokens": ending.prompt_tokens,
                "completion_tokens": ending.completion_tokens,
                "estimated": ending.estimated,
                **ending.details,
            },
        )


def start_attempt_span(tracing: Tracer, call: Call, attempt: Attempt) -> Span:
    """The GenAI client span of one attempt of ``call`` at ``attempt``'s provider."""
    config = attempt.upstream.config
    span = start_chat_span(
        tracing,
        model=attempt.target.upstream_model,
        provider=attempt.provider,
        url=config.base_url,
        max_tokens=call.request.max_tokens,
        stream=call.request.stream,
    )
    span.set_attribute("chorus.gateway.requested_model", call.route.requested)
    return span


def end_chat_span(span: Span, ending: Ending) -> None:
    """Close the serving attempt's span with the call's usage and outcome."""
    if ending.engaged:
        finished(span, input_tokens=ending.prompt_tokens, output_tokens=ending.completion_tokens)
        span.set_attribute("chorus.gateway.usage_estimated", ending.estimated)
    span.set_attribute("chorus.gateway.outcome", ending.outcome)
    if ending.outcome == ERROR:
        span.set_status(StatusCode.ERROR, f"HTTP {ending.status}")
    span.end()
