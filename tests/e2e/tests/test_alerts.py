"""Journey 6, first half: what the operator sees after the happy-path journeys.

Prometheus scrapes every service replica, the chart's alert rules load and evaluate
cleanly, and none of them fires. (The faults run after this check; the
dashboard's queries are checked last, over the whole run.)
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest
import yaml

from chorus_devstack.stack import Stack
from chorus_e2e.polling import eventually
from chorus_e2e.prometheus import RULES, Prometheus, every_target_up


@pytest.fixture
def prometheus(stack: Stack, ops: httpx.AsyncClient) -> Prometheus:
    """The stack's Prometheus."""
    return Prometheus(ops, stack.url("prometheus"))


def evaluated_since(groups: list[dict[str, object]], moment: float) -> bool:
    """Every group has been evaluated after ``moment`` (epoch seconds)."""
    return bool(groups) and all(
        datetime.fromisoformat(str(g["lastEvaluation"])).timestamp() > moment for g in groups
    )


async def test_every_service_is_up_and_no_alert_fired_during_the_happy_path(
    prometheus: Prometheus,
) -> None:
    await every_target_up(prometheus)

    expected = {
        g["name"]: sorted(r["alert"] for r in g["rules"])
        for g in yaml.safe_load(RULES.read_text())["groups"]
    }
    now = time.time()
    groups = await eventually(
        prometheus.rule_groups,
        until=lambda gs: evaluated_since(gs, now),
        what="a rule evaluation after the journeys",
    )
    assert {g["name"]: sorted(r["name"] for r in g["rules"]) for g in groups} == expected
    broken = [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
    ]
    assert broken == []

    # Nothing fires. (Pending is allowed: the fault tests stop Postgres and flood sockets
    # on purpose, and every alert needs minutes of its condition to fire.)
    firing = [a["labels"]["alertname"] for a in await prometheus.alerts() if a["state"] == "firing"]
    assert firing == []
