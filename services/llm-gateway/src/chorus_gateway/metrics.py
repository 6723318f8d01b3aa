"""The gateway's Prometheus metrics (names are a contract with the dashboards and alerts).

Labels are bounded: ``model`` is a configured model or alias, else ``other``;
``provider`` a configured provider name, or ``none`` when no provider was reached;
``status`` the HTTP status the client got — for a stream that failed after its headers
went out, the status it would have had (502 upstream error, 504 timeout), and 499 when
the client went away.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "FALLBACKS",
    "NO_PROVIDER",
    "OVERHEAD",
    "PROVIDER_CIRCUIT_OPEN",
    "RATELIMIT_REJECTIONS",
    "REQUESTS",
    "SPEND",
    "STREAMS_IN_FLIGHT",
    "TIME_PER_OUTPUT_TOKEN",
    "TOKENS",
    "TTFT",
    "UPSTREAM_ERRORS",
    "USAGE_DROPPED",
    "VIRTUAL_KEY_LOOKUPS",
    "declare_series",
]

NO_PROVIDER = "none"

REQUESTS = Counter(
    "chorus_gateway_requests_total",
    "Chat completion requests by model label, serving provider and status (499: client left).",
    ["model", "provider", "status"],
)
TTFT = Histogram(
    "chorus_gateway_ttft_seconds",
    "Time from the request's arrival to the first streamed chunk sent to the client.",
    ["model", "provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
TIME_PER_OUTPUT_TOKEN = Histogram(
    "chorus_gateway_time_per_output_token_seconds",
    "Streaming time after the first chunk divided by the completion tokens after the first.",
    ["model", "provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2),
)
TOKENS = Counter(
    "chorus_gateway_tokens_total",
    "Tokens billed, by direction (prompt|completion) and model label.",
    ["direction", "model"],
)
STREAMS_IN_FLIGHT = Gauge(
    "chorus_gateway_streams_in_flight",
    "Streamed completions being relayed right now.",
)
UPSTREAM_ERRORS = Counter(
    "chorus_gateway_upstream_errors_total",
    "Failed upstream attempts by provider and kind (connect, timeout_ttft, timeout_idle, "
    "timeout_total, status_429, status_4xx, status_5xx, stream_error, dropped).",
    ["provider", "kind"],
)
RATELIMIT_REJECTIONS = Counter(
    "chorus_gateway_ratelimit_rejections_total",
    "Requests refused with 429 by the gateway's own limits (requests|tokens|concurrency; "
    "end_user_* when a service key's share for one end user ran out).",
    ["limit"],
)
FALLBACKS = Counter(
    "chorus_gateway_fallbacks_total",
    "Requests moved to another provider (or retried on the same one) before the first byte.",
    ["from_provider", "to_provider"],
)
PROVIDER_CIRCUIT_OPEN = Gauge(
    "chorus_gateway_provider_circuit_open",
    "1 while the provider's circuit breaker is open (or half-open), else 0.",
    ["provider"],
)
OVERHEAD = Histogram(
    "chorus_gateway_overhead_seconds",
    "Gateway time excluding the upstream wait: to the first byte for streams, whole for others.",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
)
USAGE_DROPPED = Counter(
    "chorus_gateway_usage_records_dropped_total",
    "Usage records that could not be enqueued (logged in full for manual replay).",
)
VIRTUAL_KEY_LOOKUPS = Counter(
    "chorus_gateway_virtual_key_lookups_total",
    "Virtual key resolutions by where the answer came from (cache|redis).",
    ["source"],
)
SPEND = Counter(
    "chorus_gateway_spend_micros_total",
    "Settled spend in micro-units of currency (1 USD = 1e6) by model label and provider.",
    ["model", "provider"],
)

#: ``kind`` values of UPSTREAM_ERRORS and ``limit`` values of RATELIMIT_REJECTIONS.
UPSTREAM_ERROR_KINDS = (
    "connect",
    "timeout_ttft",
    "timeout_idle",
    "timeout_total",
    "status_429",
    "status_4xx",
    "status_5xx",
    "stream_error",
    "dropped",
)
LIMITS = (
    "requests",
    "tokens",
    "concurrency",
    "end_user_requests",
    "end_user_tokens",
    "end_user_concurrency",
    "owner_requests",
    "owner_tokens",
    "owner_concurrency",
    "budget",
)


def declare_series(served: Mapping[str, Collection[str]]) -> None:
    """Export the labelled series at zero from the start (``served``: model label → providers).

    A series born at its first increment has no earlier sample, so ``rate()`` and
    ``increase()`` miss that increment: a replica's first rejections, fallbacks or upstream
    errors never showed on the dashboard, and a lightly used model had no TTFT or
    time-per-token data at all. The labels are known from the configuration.
    """
    providers = sorted({p for serving in served.values() for p in serving})
    for model, serving in served.items():
        for direction in ("prompt", "completion"):
            TOKENS.labels(direction, model)
        for provider in serving:
            SPEND.labels(model, provider)
            TTFT.labels(model, provider)
            TIME_PER_OUTPUT_TOKEN.labels(model, provider)
    for provider in providers:
        for kind in UPSTREAM_ERROR_KINDS:
            UPSTREAM_ERRORS.labels(provider, kind)
        for other in providers:
            FALLBACKS.labels(provider, other)
    for limit in LIMITS:
        RATELIMIT_REJECTIONS.labels(limit)
    for source in ("cache", "redis"):
        VIRTUAL_KEY_LOOKUPS.labels(source)
