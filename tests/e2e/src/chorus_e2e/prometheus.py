"""Reading Prometheus as an operator does: targets, rules, alerts, queries."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import yaml

from chorus_devstack.routes import repo_root
from chorus_e2e.polling import eventually

__all__ = [
    "ALERT_FOR",
    "CHART",
    "DASHBOARD",
    "JOBS",
    "RULES",
    "Prometheus",
    "alert_names",
    "chart_rules",
    "dashboard_queries",
    "every_target_up",
    "has_number",
]

#: The alert rules and the dashboard the chart ships, and the chart.
RULES = repo_root() / "deploy/prometheus/chorus.rules.yaml"
DASHBOARD = repo_root() / "deploy/grafana/chorus.json"
CHART = repo_root() / "deploy/helm/chorus"
#: How long an alert's condition must hold before it fires in the test stack (the chart's
#: forOverrides, for every alert): shorter than a run, so "nothing fired" can fail.
ALERT_FOR = "10s"


def alert_names() -> list[str]:
    """Every alert of the rules file, in file order."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def chart_rules(directory: Path, *, alert_for: str) -> Path:
    """The chart's PrometheusRule as a Prometheus rules file, every alert's ``for:`` set to
    ``alert_for`` through the chart's ``metrics.prometheusRule.forOverrides`` value.

    A test run lasts minutes; with the production ``for:`` (up to 15 m) "nothing fired"
    could not fail. Rendered by Helm's own engine, so the stack runs what an install gets.
    """
    values: dict[str, Any] = {
        "metrics": {
            "prometheusRule": {
                "enabled": True,
                "forOverrides": dict.fromkeys(alert_names(), alert_for),
            }
        }
    }
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(chart.merge_values(values))
        files = chart.render(values=values, name="chorus", namespace="chorus")
    [rule] = [
        document
        for name, text in files.items()
        if name.endswith("templates/prometheusrule.yaml")
        for document in yaml.safe_load_all(text)
        if document
    ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "chorus.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


#: Scrape jobs (named as the chart's ServiceMonitors) and their replica counts in the stack.
JOBS = {"chorus-api": 1, "chorus-realtime": 2, "chorus-llm-gateway": 2, "chorus-worker": 1}


def dashboard_queries(path: Path) -> Iterator[tuple[str, str]]:
    """``(panel title, expr)`` of every query of a Grafana dashboard JSON, rows included."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            yield from walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield str(panel.get("title", "")), str(target["expr"])

    yield from walk(json.loads(path.read_text())["panels"])


class Prometheus:
    """The HTTP API of one Prometheus server."""

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self.client = client
        self.base_url = base_url

    async def get(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s ``data``."""
        response = await self.client.get(f"{self.base_url}/api/v1/{path}", params=params)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = await self.get("query", query=expr)
        return list(data["result"])

    async def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets."""
        return list((await self.get("targets", state="active"))["activeTargets"])

    async def rule_groups(self) -> list[dict[str, Any]]:
        """Loaded rule groups with their rules' health and state."""
        return list((await self.get("rules"))["groups"])

    async def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now."""
        return list((await self.get("alerts"))["alerts"])


def has_number(result: list[dict[str, Any]]) -> bool:
    """True when some sample of an instant vector is a real number (not NaN)."""
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


async def every_target_up(prometheus: Prometheus) -> None:
    """Wait until every replica of every service is scraped and ``up``."""
    targets = await eventually(
        prometheus.targets,
        until=lambda ts: (
            all(t["health"] == "up" for t in ts)
            and Counter(t["labels"]["job"] for t in ts) == Counter(JOBS)
        ),
        what="every target up",
    )
    assert Counter(t["labels"]["job"] for t in targets) == Counter(JOBS)
    up = await prometheus.query('up{job=~"chorus-.+"}')
    assert sorted(float(s["value"][1]) for s in up) == [1.0] * sum(JOBS.values())
