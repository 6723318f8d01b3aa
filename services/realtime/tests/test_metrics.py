"""Delivery metrics: counted cheaply, exported as a Prometheus counter and histogram."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from chorus_realtime.metrics import Deliveries


def test_deliveries_export_a_counter_and_a_cumulative_histogram() -> None:
    deliveries = Deliveries((0.01, 0.1))
    registry = CollectorRegistry()
    registry.register(deliveries)
    now = time.time()
    # Two live events and a replayed one (counted, not timed) written to one client...
    deliveries.delivered([now - 0.05, now - 5.0, None])
    # ...and one live event written to 100 clients at once: 100 deliveries.
    deliveries.delivered([now - 0.005], sockets=100)
    text = generate_latest(registry).decode()
    assert "chorus_realtime_messages_out_total 103.0" in text
    assert 'chorus_realtime_fanout_latency_seconds_bucket{le="0.01"} 100.0' in text
    assert 'chorus_realtime_fanout_latency_seconds_bucket{le="0.1"} 101.0' in text
    assert 'chorus_realtime_fanout_latency_seconds_bucket{le="+Inf"} 102.0' in text
    assert "chorus_realtime_fanout_latency_seconds_count 102.0" in text


def test_labelled_series_exist_at_zero_before_their_first_event() -> None:
    exposition = generate_latest(REGISTRY).decode()
    for line in (
        'chorus_realtime_rejected_total{reason="auth"}',
        'chorus_realtime_rejected_total{reason="forbidden"}',
        'chorus_realtime_recoveries_total{result="miss"}',
        'chorus_realtime_messages_in_total{type="invalid"}',
    ):
        assert line in exposition
