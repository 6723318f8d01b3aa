"""The Grafana dashboard: valid, shipped by the chart unchanged, PromQL on every panel."""

from __future__ import annotations

import json

from deploycheck.chart import CHART, REPO
from deploycheck.metrics import dashboard_exprs, referenced_metrics

DASHBOARD = REPO / "deploy" / "grafana" / "chorus.json"


def test_chart_ships_the_same_dashboard() -> None:
    copy = CHART / "files" / "dashboards" / "chorus.json"
    assert copy.read_text() == DASHBOARD.read_text(), (
        f"run: cp {DASHBOARD.relative_to(REPO)} {copy.relative_to(REPO)}"
    )


def test_every_panel_queries_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "Chorus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_every_service_has_its_panels() -> None:
    metrics = referenced_metrics(dashboard_exprs(DASHBOARD))
    for name in (
        "chorus_http_requests_total",
        "chorus_http_request_duration_seconds_bucket",
        "chorus_realtime_connections",
        "chorus_realtime_fanout_latency_seconds_bucket",
        "chorus_realtime_slow_client_disconnects_total",
        "chorus_realtime_canary_lag_seconds",
        "chorus_gateway_ttft_seconds_bucket",
        "chorus_gateway_tokens_total",
        "chorus_gateway_upstream_errors_total",
        "chorus_gateway_ratelimit_rejections_total",
        "chorus_gateway_spend_micros_total",
        "chorus_worker_jobs_started_total",
        "chorus_worker_job_lag_seconds_bucket",
        "chorus_worker_dead_letters_total",
        "chorus_worker_queue_depth",
    ):
        assert name in metrics
