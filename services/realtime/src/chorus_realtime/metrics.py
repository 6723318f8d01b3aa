"""Prometheus metrics of the realtime service (names are a contract, ``docs/design.md``; labels
bounded)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "CANARY_FAILURES",
    "CANARY_LAG",
    "CHANNELS",
    "CHANNEL_MOVES",
    "CONNECTIONS",
    "DELIVERIES",
    "GAP_REPLAYS",
    "MESSAGES_IN",
    "PUBSUB_CONNECTIONS",
    "PUBSUB_RECONNECTS",
    "RECOVERIES",
    "REJECTED",
    "ROOM_REFUSALS",
    "ROOM_REVOCATIONS",
    "SLOW_CLIENT_DISCONNECTS",
    "TOKEN_CLOSES",
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


class Deliveries(Collector):
    """``chorus_realtime_messages_out_total`` and ``chorus_realtime_fanout_latency_seconds``.

    A delivery happens per socket per event — hundreds of thousands a second — where
    prometheus_client's Counter and Histogram would take a lock and make several calls
    each. Here the events written to many sockets at once are counted once, with their
    number of sockets as the weight; the counter and the histogram are built from those
    numbers when scraped (the event loop does both, so no lock is needed).
    """

    def __init__(self, buckets: Iterable[float]) -> None:
        self._bounds = tuple(buckets)
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0
        self.count = 0

    def delivered(self, published: Sequence[float | None], sockets: int = 1) -> None:
        """Events written to ``sockets`` clients, by now (their ``ts``; None for replays)."""
        self.count += len(published) * sockets
        now = time.time()
        bounds, counts = self._bounds, self._counts
        for published_at in published:
            if published_at is not None:
                latency = now - published_at
                counts[bisect_left(bounds, latency)] += sockets
                self._sum += latency * sockets

    def collect(self) -> Iterator[Metric]:
        """The counter and the histogram, as Prometheus families."""
        yield CounterMetricFamily(
            "chorus_realtime_messages_out",
            "Events written to client connections (one per delivery).",
            value=self.count,
        )
        cumulative = list(accumulate(self._counts))
        buckets = [
            (repr(float(bound)), float(n))
            for bound, n in zip(self._bounds, cumulative, strict=False)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        yield HistogramMetricFamily(
            "chorus_realtime_fanout_latency_seconds",
            "From the envelope's publish timestamp (ms precision) to the write to a client.",
            buckets=buckets,
            sum_value=self._sum,
        )


#: Fan-out latency buckets (seconds): fine around the 50 ms objective.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1)
DELIVERIES = Deliveries((*LATENCY_BUCKETS, 0.25, 0.5, 1.0, 2.5, 5.0))
REGISTRY.register(DELIVERIES)
SLOW_CLIENT_DISCONNECTS = Counter(
    "chorus_realtime_slow_client_disconnects_total",
    "Connections closed because their send queue overflowed.",
)
RECOVERIES = Counter(
    "chorus_realtime_recoveries_total",
    "Resumes from a stream id: hit (nothing lost), miss (the offset left history, or more "
    "than REPLAY_MAX were missed) or too_large (the backlog would not fit the send queue).",
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
    "Times a pub/sub connection was (re)built, by reason (start|error|canary|moved: a "
    "cluster node now serving channels whose slots moved).",
    ["reason"],
)
PUBSUB_CONNECTIONS = Gauge(
    "chorus_realtime_pubsub_connections",
    "Pub/sub connections open: 1 on one Redis, one per cluster node serving subscribed slots.",
)
CHANNEL_MOVES = Counter(
    "chorus_realtime_channel_moves_total",
    "Channels resubscribed on another cluster node (failover, slot migration, MOVED).",
)
GAP_REPLAYS = Counter(
    "chorus_realtime_gap_replayed_events_total",
    "Events replayed from the streams to close a gap after a pub/sub rebuild or a move.",
)
REJECTED = Counter(
    "chorus_realtime_rejected_total",
    "Connections or frames refused, by reason.",
    ["reason"],
)
ROOM_REFUSALS = Counter(
    "chorus_realtime_room_refusals_total",
    "Room access refused, by action (join|subscribe|message|typing|presence) and reason "
    "(forbidden: the rule said no; unavailable: it could not be checked).",
    ["action", "reason"],
)
ROOM_REVOCATIONS = Counter(
    "chorus_realtime_room_revocations_total",
    "Room subscriptions ended because access was taken away, by reason (removed|left|"
    "private|deleted: an event in the room; recheck: the periodic re-check; unavailable: "
    "the access lists were gone from Redis).",
    ["reason"],
)
TOKEN_CLOSES = Counter(
    "chorus_realtime_token_closes_total",
    "Open connections closed because their token expired or was revoked, by reason.",
    ["reason"],
)


def _declare_series() -> None:
    """Export every labelled series at zero from the start.

    A series that first appears at its first increment shows no rate for that increment
    (``rate()`` needs two samples), so the first rejection or miss on a replica would be
    invisible on the dashboard and to alerts.
    """
    for reason in (
        "auth",
        "invalid_room",
        "user_connections",
        "draining",
        "flood",
        "too_big",
        "forbidden",
        "user_bytes",
        "user_rooms",
        "assistant_busy",
    ):
        REJECTED.labels(reason)
    for kind in ("message", "typing", "ping", "subscribe", "unsubscribe", "invalid"):
        MESSAGES_IN.labels(kind)
    for result in ("hit", "miss", "too_large"):
        RECOVERIES.labels(result)
    for transport in ("ws", "sse"):
        CONNECTIONS.labels(transport)
    for reason in ("start", "error", "canary", "moved"):
        PUBSUB_RECONNECTS.labels(reason)
    for reason in ("expired", "revoked"):
        TOKEN_CLOSES.labels(reason)
    for action in ("join", "subscribe", "message", "typing", "presence"):
        for reason in ("forbidden", "unavailable"):
            ROOM_REFUSALS.labels(action, reason)
    for reason in ("removed", "left", "private", "deleted", "recheck", "unavailable"):
        ROOM_REVOCATIONS.labels(reason)


_declare_series()
