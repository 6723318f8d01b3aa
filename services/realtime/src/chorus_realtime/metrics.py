"""Prometheus metrics of the realtime service (names fixed by the brief; labels bounded)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CANARY_FAILURES",
    "CANARY_LAG",
    "CHANNELS",
    "CONNECTIONS",
    "FANOUT_LATENCY",
    "MESSAGES_IN",
    "MESSAGES_OUT",
    "PUBSUB_RECONNECTS",
    "RECOVERIES",
    "REJECTED",
    "SLOW_CLIENT_DISCONNECTS",
]

CONNECTIONS = Gauge(
    "chorus_realtime_connections",
    "Open client connections on this replica, by transport (ws|sse).",
    ["transport"],
)
CHANNELS = Gauge(
    "chorus_realtime_channels",
    "Channels this replica is subscribed to on Redis (those with local subscribers).",
)
MESSAGES_IN = Counter(
    "chorus_realtime_messages_in_total",
    "Client frames received, by type (message|typing|ping|subscribe|unsubscribe|invalid).",
    ["type"],
)
MESSAGES_OUT = Counter(
    "chorus_realtime_messages_out_total",
    "Events written to client connections (one per delivery).",
)
FANOUT_LATENCY = Histogram(
    "chorus_realtime_fanout_latency_seconds",
    "From the envelope's publish timestamp (ms precision) to the write to a client.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SLOW_CLIENT_DISCONNECTS = Counter(
    "chorus_realtime_slow_client_disconnects_total",
    "Connections closed because their send queue overflowed.",
)
RECOVERIES = Counter(
    "chorus_realtime_recoveries_total",
    "Resumes from a stream id: hit (nothing lost) or miss (the offset left history).",
    ["result"],
)
CANARY_LAG = Gauge(
    "chorus_realtime_canary_lag_seconds",
    "Publish → receive time of the last canary through this replica's pub/sub connection.",
)
CANARY_FAILURES = Counter(
    "chorus_realtime_canary_failures_total",
    "Canaries that did not come back in time (the pub/sub connection is then rebuilt).",
)
PUBSUB_RECONNECTS = Counter(
    "chorus_realtime_pubsub_reconnects_total",
    "Times the pub/sub connection was (re)built, by reason (start|error|canary).",
    ["reason"],
)
REJECTED = Counter(
    "chorus_realtime_rejected_total",
    "Connections or frames refused, by reason.",
    ["reason"],
)
