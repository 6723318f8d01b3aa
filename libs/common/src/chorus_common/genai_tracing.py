"""GenAI spans: a chat completion call as the OpenTelemetry GenAI conventions describe it.

Two services call a model: the worker (the assistant, through the gateway) and the
gateway (each attempt at a provider). Both make a client span ``chat <model>`` with the
conventions' attributes — ``gen_ai.operation.name``, ``gen_ai.provider.name`` (and the
older ``gen_ai.system``), ``gen_ai.request.model``, ``gen_ai.request.max_tokens``,
``gen_ai.request.stream``, ``server.address``/``server.port`` — and, as the answer comes,
the time to the first chunk (the attribute ``gen_ai.response.time_to_first_chunk`` and an
event at that moment, so a trace view shows where the first token landed), then
``gen_ai.response.model``, ``gen_ai.response.finish_reasons`` and the token usage
``gen_ai.usage.input_tokens`` / ``output_tokens``. No prompt or answer text is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer

__all__ = ["finished", "first_chunk", "start_chat_span"]

#: The event marking the first chunk of a streamed answer.
FIRST_CHUNK_EVENT = "gen_ai.first_chunk"


def start_chat_span(
    tracing: Tracer,
    *,
    model: str,
    provider: str,
    url: str | None = None,
    max_tokens: int | None = None,
    stream: bool = True,
    parent: Context | None = None,
) -> Span:
    """A started (not current) client span ``chat <model>`` for one completion call."""
    attributes: dict[str, str | int | bool] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.stream": stream,
    }
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    if url:
        parts = urlsplit(url)
        if parts.hostname:
            attributes["server.address"] = parts.hostname
        if parts.port:
            attributes["server.port"] = parts.port
    return tracing.start_span(
        f"chat {model}", context=parent, kind=SpanKind.CLIENT, attributes=attributes
    )


def first_chunk(span: Span, seconds: float) -> None:
    """The first chunk arrived ``seconds`` after the request was sent."""
    span.set_attribute("gen_ai.response.time_to_first_chunk", seconds)
    span.add_event(FIRST_CHUNK_EVENT, {"gen_ai.response.time_to_first_chunk": seconds})


def finished(
    span: Span,
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    response_model: str | None = None,
    finish_reasons: Sequence[str] = (),
) -> None:
    """The answer is complete: usage and how it ended."""
    if input_tokens is not None:
        span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
    if output_tokens is not None:
        span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    if response_model:
        span.set_attribute("gen_ai.response.model", response_model)
    if finish_reasons:
        span.set_attribute("gen_ai.response.finish_reasons", list(finish_reasons))
