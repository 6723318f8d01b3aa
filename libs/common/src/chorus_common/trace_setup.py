"""Building the tracer provider: what ``configure_tracing`` loads only when tracing is on.

The provider gets the process's resource, the sampler of ``OTEL_TRACES_SAMPLER``
(``trace_sampling``), a batch processor exporting OTLP/HTTP protobuf from a background
thread, and becomes the global provider the instrumentations of redis-py and asyncpg
(installed here) report to.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from chorus_common.settings import TracingSettings
from chorus_common.trace_sampling import build_sampler

__all__ = ["install_provider", "traces_endpoint"]

logger = logging.getLogger("chorus.tracing")


def traces_endpoint(settings: TracingSettings) -> str:
    """Where spans go: ``…_TRACES_ENDPOINT`` as is, or ``<…_ENDPOINT>/v1/traces``."""
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    base = settings.otel_exporter_otlp_endpoint or ""
    return base.rstrip("/") + "/v1/traces"


def install_provider(settings: TracingSettings, *, service: str, version: str) -> TracerProvider:
    """The process's tracer provider, installed globally with the instrumentations."""
    name = settings.otel_service_name or f"chorus-{service}"
    attributes: dict[str, str] = {"service.name": name, "service.namespace": "chorus"}
    if version:
        attributes["service.version"] = version
    env = getattr(settings, "env", None)
    if env is not None:
        attributes["deployment.environment.name"] = str(getattr(env, "value", env))
    sampler = build_sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES (ours win: service.name above).
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    endpoint = traces_endpoint(settings)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    logger.info(
        "tracing on: spans of %s go to %s (sampler %s)",
        name,
        endpoint,
        settings.otel_traces_sampler,
    )
    return provider
