"""Prometheus HTTP metrics: bounded labels, and an exposition Prometheus can parse."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest_types import StreamControlLike


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _requests(samples: dict, method: str, route: str, status: str) -> float:  # type: ignore[type-arg]
    key = ("chorus_http_requests_total", (("method", method), ("route", route), ("status", status)))
    return float(samples.get(key, 0.0))


async def test_exposition_parses_and_counts_by_route_template(
    probe_client: httpx.AsyncClient,
) -> None:
    before = _samples((await probe_client.get("/metrics")).text)
    for item in (1, 2, 3):
        await probe_client.get(f"/items/{item}")
    await probe_client.get("/items/404")
    await probe_client.get("/no/such/path/123")
    response = await probe_client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)
    route = "/items/{item_id}"
    assert _requests(after, "GET", route, "200") - _requests(before, "GET", route, "200") == 3
    assert _requests(after, "GET", route, "404") - _requests(before, "GET", route, "404") == 1
    # Unmatched paths share one label: a scanner cannot explode the series count.
    assert _requests(after, "GET", "<unmatched>", "404") >= 1
    assert not any("/no/such" in str(labels) for _, labels in after)
    histogram = (
        "chorus_http_request_duration_seconds_count",
        (("method", "GET"), ("route", route)),
    )
    assert after[histogram] >= 4


async def test_in_flight_gauge_sees_an_open_stream(
    probe_client: httpx.AsyncClient, control: StreamControlLike
) -> None:
    async with probe_client.stream("GET", "/stream") as response:
        await asyncio.wait_for(anext(response.aiter_raw()), timeout=5)
        during = _samples((await probe_client.get("/metrics")).text)
        # The stream and the /metrics request itself.
        assert during[("chorus_http_requests_in_flight", ())] >= 2
        control.release.set()
    await asyncio.wait_for(control.disconnected.wait(), timeout=5)
    after = _samples((await probe_client.get("/metrics")).text)
    assert after[("chorus_http_requests_in_flight", ())] == 1


async def test_method_label_is_bounded(probe_client: httpx.AsyncClient) -> None:
    await probe_client.request("PROPFIND", "/items/1")
    samples = _samples((await probe_client.get("/metrics")).text)
    methods = {
        dict(labels).get("method")
        for name, labels in samples
        if name == "chorus_http_requests_total"
    }
    assert "PROPFIND" not in methods
    assert "OTHER" in methods
