"""Reading Prometheus as an operator does: targets, rules, alerts, queries."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from chorus_devstack.routes import repo_root
from chorus_e2e.polling import eventually

__all__ = [
    "DASHBOARD",
    "JOBS",
    "RULES",
    "Prometheus",
    "dashboard_queries",
    "every_target_up",
    "has_number",
]

#: The alert rules and the dashboard the chart ships.
RULES = repo_root() / "deploy/prometheus/chorus.rules.yaml"
DASHBOARD = repo_root() / "deploy/grafana/chorus.json"
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
