"""Journey 6, first half: what the operator sees after everyday use.

Prometheus scrapes every service replica, the chart's alert rules load and evaluate
cleanly with the ``for:`` the chart's values gave them, and none is firing or about to:
every alert pending is waited out until it fires or resolves, and none may fire. (The
faults run after this check; the dashboard's queries are checked last, over the whole run.)
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from chorus_devstack.stack import Stack
from chorus_e2e.polling import eventually
from chorus_e2e.prometheus import ALERT_FOR, Prometheus, alert_names, every_target_up


@pytest.fixture
def prometheus(stack: Stack, ops: httpx.AsyncClient) -> Prometheus:
    """The stack's Prometheus."""
    return Prometheus(ops, stack.url("prometheus"))


def evaluated_since(groups: list[dict[str, Any]], moment: float) -> bool:
    """Every group has been evaluated after ``moment`` (epoch seconds)."""
    return bool(groups) and all(
        datetime.fromisoformat(str(g["lastEvaluation"])).timestamp() > moment for g in groups
    )


def seconds(duration: str) -> float:
    """``10s`` → 10.0 (the simple durations this suite sets)."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]]


@pytest.mark.usefixtures("everyday_traffic")
async def test_every_service_is_up_and_no_alert_fires_after_everyday_use(
    prometheus: Prometheus,
) -> None:
    await every_target_up(prometheus)

    now = time.time()
    groups = await eventually(
        prometheus.rule_groups,
        until=lambda gs: evaluated_since(gs, now),
        what="a rule evaluation after the traffic",
    )
    rules = [rule for group in groups for rule in group["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(alert_names())
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert broken == []
    # The chart's value reached Prometheus: every condition fires after ALERT_FOR.
    assert {r["name"]: r["duration"] for r in rules} == dict.fromkeys(
        alert_names(), seconds(ALERT_FOR)
    )

    # A pending alert fires or resolves within ALERT_FOR: wait until none is pending.
    alerts = await eventually(
        prometheus.alerts,
        until=lambda found: all(a["state"] != "pending" for a in found),
        timeout=3 * seconds(ALERT_FOR) + 10,
        what="pending alerts to fire or resolve",
    )
    firing = [(a["labels"]["alertname"], a["labels"].get("job"), a.get("value")) for a in alerts]
    assert firing == []
