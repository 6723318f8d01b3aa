"""Journey 6, second half (runs last): every query of the Grafana dashboard has data.

The dashboard's ``$__rate_interval`` and ``$__range`` become a window covering the whole run, as an
operator looking at the last hour would see it — after the journeys and the faults in a
full run, or after everyday use alone (``everyday_traffic``) when this test runs by itself.
"""

from __future__ import annotations

import httpx
import pytest

from chorus_devstack.stack import Stack
from chorus_e2e.prometheus import (
    DASHBOARD,
    Prometheus,
    dashboard_queries,
    every_target_up,
    has_number,
)


@pytest.mark.usefixtures("everyday_traffic")
async def test_every_dashboard_query_returns_data(stack: Stack, ops: httpx.AsyncClient) -> None:
    prometheus = Prometheus(ops, stack.url("prometheus"))
    await every_target_up(prometheus)  # the faults' restarts are all back

    queries = list(dashboard_queries(DASHBOARD))
    assert len(queries) > 20
    empty = []
    for title, expr in queries:
        result = await prometheus.query(
            expr.replace("$__rate_interval", "1h").replace("$__range", "1h")
        )
        if not has_number(result):
            empty.append((title, expr))
    assert not empty, "queries without data:\n" + "\n".join(f"{t}: {e}" for t, e in empty)
