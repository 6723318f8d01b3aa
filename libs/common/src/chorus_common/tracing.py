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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from chorus_common.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "configure_tracing",
    "current_ids",
    "exemplar",
    "record_failure",
    "shutdown_tracing",
    "tracer",
]

#: The instrumentation scope of every span Chorus makes itself.
SCOPE = "chorus"


class _State:
    """The process's tracing: both None while tracing is off."""

    provider: TracerProvider | None = None
    tracer: Tracer | None = None


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
    return True


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
