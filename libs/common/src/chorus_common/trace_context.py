"""W3C trace context across every hop: HTTP headers, event envelopes, jobs, client frames.

A span's context travels as a ``traceparent`` (``00-<trace id>-<span id>-<flags>``, W3C
Trace Context): in HTTP request headers (with ``tracestate``), as the optional
``traceparent`` field of an event envelope and of a realtime client frame, and as the
``tp`` entry of an arq job. These helpers write the current span's context and read a
received one back; with tracing off they write nothing, and nothing received is parsed.

Values from outside are bounded before they are parsed (``MAX_LENGTH``) and an invalid
one is ignored: a client can start or continue a trace, never break a request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import get_global_textmap
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from chorus_common.tracing import tracer

__all__ = [
    "TRACEPARENT",
    "context_from_headers",
    "context_from_traceparent",
    "current_traceparent",
    "is_sampled",
    "trace_headers",
]

TRACEPARENT: Final = "traceparent"
#: Longest ``traceparent`` or ``tracestate`` read from outside (the W3C limit is 512).
MAX_LENGTH: Final = 512
_HEADERS: Final = frozenset({b"traceparent", b"tracestate"})
_W3C = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span being run; None with tracing off or no span."""
    if tracer() is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def is_sampled(traceparent: str) -> bool:
    """Whether a ``traceparent`` says its trace is sampled (the flags' last bit)."""
    try:
        return bool(int(traceparent[-2:], 16) & 1)
    except ValueError:
        return False


def context_from_traceparent(value: object) -> Context | None:
    """The remote parent a ``traceparent`` field names; None if absent, invalid or off."""
    if tracer() is None or not isinstance(value, str) or len(value) > MAX_LENGTH:
        return None
    context = _W3C.extract({TRACEPARENT: value})
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def context_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> Context | None:
    """The remote parent in ASGI request headers (``traceparent``, ``tracestate``, baggage)."""
    if tracer() is None:
        return None
    carrier: dict[str, str] = {}
    for name, value in headers:
        if name in _HEADERS and len(value) <= MAX_LENGTH:
            carrier[name.decode()] = value.decode("latin-1")
    if TRACEPARENT not in carrier:
        return None
    context = get_global_textmap().extract(carrier)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def trace_headers() -> dict[str, str]:
    """Headers carrying the current span's context to an HTTP server; empty when off."""
    if tracer() is None:
        return {}
    carrier: dict[str, str] = {}
    get_global_textmap().inject(carrier)
    return carrier
