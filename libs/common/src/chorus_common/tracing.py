"""Tracing with OpenTelemetry: one setup for every process, and off unless asked for.

:func:`configure_tracing` runs once per process (``create_service_app`` calls it). With no
OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``…_TRACES_ENDPOINT``), or with
``OTEL_SDK_DISABLED=true``, it does nothing at all: the SDK is not imported, no provider,
processor, exporter thread or instrumentation exists, and every traced path of Chorus
costs one check of :func:`tracer` (None). With an endpoint it installs:

- a tracer provider with the resource ``service.name`` (``OTEL_SERVICE_NAME``, default
  ``chorus-<service>``), ``service.version``, ``service.namespace=chorus`` and
  ``deployment.environment.name``, merged with ``OTEL_RESOURCE_ATTRIBUTES``;
- the sampler of ``OTEL_TRACES_SAMPLER`` / ``…_ARG`` (default ``parentbased_always_on``),
  with one rule of ours on top: a *client* span with no parent — a Redis command or SQL
  statement run outside any traced operation (the worker's polling, a readiness check) —
  is never a trace of its own;
- a batch span processor exporting over OTLP/HTTP (protobuf) from a background thread;
  its queue (``OTEL_BSP_MAX_QUEUE_SIZE``, 2048 spans) bounds the memory and the export
  work whatever the traffic: spans beyond it are dropped, never waited for;
- the maintained instrumentations where they sit on our paths: redis-py (every service)
  and asyncpg (the api's ORM and Reader, the worker's ORM).

Our own spans (HTTP server spans, events, jobs, realtime delivery, the gateway's relay)
are made where the work is, each behind ``tracer() is not None``.

An unsampled trace costs its root span and nothing more. The root of an operation (a
request, a message, a job) is made current with :func:`current`, which — when the trace
is not sampled and the sampler follows the parent (``parentbased_*``, so every child
would be dropped anyway) — also sets the specification's ``suppress_instrumentation``
flag: the Redis and SQL instrumentations then skip their spans after one look at the
context, and :func:`child_tracer` tells our own code not to make any. The trace context
still travels on (its ``traceparent`` says "not sampled"), so the next service drops the
trace too instead of sampling a fragment of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Tracer

from chorus_common.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "child_tracer",
    "configure_tracing",
    "context_with",
    "current",
    "current_ids",
    "exemplar",
    "record_failure",
    "shutdown_tracing",
    "tracer",
]

#: The instrumentation scope of every span Chorus makes itself.
SCOPE = "chorus"
#: The context flag instrumentations check before making a span (its public spelling).
QUIET: Final = "suppress_instrumentation"


class _State:
    """The process's tracing: both None while tracing is off."""

    provider: TracerProvider | None = None
    tracer: Tracer | None = None
    #: Whether the sampler follows the parent's decision (``parentbased_*``).
    parent_based: bool = True


_state = _State()


def tracer() -> Tracer | None:
    """The tracer of Chorus's own spans, or None while tracing is off (the one check)."""
    return _state.tracer


def configure_tracing(settings: TracingSettings, *, service: str, version: str = "") -> bool:
    """Set tracing up from ``settings`` (once per process); True when it is on.

    ``service`` is the service's short name (``api``); a second call — a test building
    several apps in one process — keeps the first provider.
    """
    if not settings.tracing_enabled:
        return False
    if _state.provider is not None:
        return True
    # The SDK, the exporter and the instrumentations are loaded only when tracing is on.
    from chorus_common.trace_setup import install_provider  # noqa: PLC0415

    _state.provider = install_provider(settings, service=service, version=version)
    _state.tracer = _state.provider.get_tracer(SCOPE, version or None)
    _state.parent_based = settings.otel_traces_sampler.startswith("parentbased_")
    return True


def child_tracer() -> Tracer | None:
    """The tracer for a child of the current span; None when off or the trace is unsampled.

    Under a parent-based sampler a child of an unsampled span is dropped whatever it is,
    so not making it at all is the same trace for less work.
    """
    if _state.tracer is None or otel_context.get_value(QUIET):
        return None
    return _state.tracer


def context_with(span: Span, parent: Context | None = None) -> Context:
    """``parent`` (or the current context) with ``span`` current, quiet if it is unsampled."""
    context = trace.set_span_in_context(span, parent)
    if _state.parent_based and not span.get_span_context().trace_flags.sampled:
        context = otel_context.set_value(QUIET, True, context)
    return context


@contextmanager
def current(span: Span, *, end: bool = True) -> Iterator[Span]:
    """``span`` current for the block (see :func:`context_with`); a failure marks it.

    The root span of an operation goes through here, so that an unsampled one quiets
    everything under it. With ``end``, the span ends with the block.
    """
    token = otel_context.attach(context_with(span))
    try:
        yield span
    except BaseException as exc:
        record_failure(span, exc)
        raise
    finally:
        otel_context.detach(token)
        if end:
            span.end()


def shutdown_tracing() -> None:
    """Export what is buffered and stop the exporter (the end of the process's lifespan)."""
    provider = _state.provider
    _state.provider = _state.tracer = None
    if provider is not None:
        provider.shutdown()


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the span being run, for log lines; None if none."""
    if _state.tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def exemplar() -> dict[str, str] | None:
    """An exemplar for a Prometheus observation: the current *sampled* trace, else None.

    Only sampled traces are exported, so only they are worth pointing at from a metric.
    """
    if _state.tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


def record_failure(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc`` (its type as ``error.type``, the exception as an event)."""
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(trace.StatusCode.ERROR, str(exc)[:200])
