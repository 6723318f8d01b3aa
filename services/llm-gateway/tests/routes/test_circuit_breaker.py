"""The circuit breaker through the completion routes, with a real, low failure threshold.

The other route tests run with a threshold no test reaches; here a replica opens a
provider's circuit after two failures, and the tests check what a client and the providers
see: the failing provider is no longer called, a model it serves alone is a 503 with
``retry-after``, and after the cooldown one probe closes the circuit again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from prometheus_client import REGISTRY

from chorus_devstack.servers import RunningRedis
from chorus_mock_openai import completion_text
from chorus_mock_openai.testing import MockServer

from ..support import WORKER_KEY, provider, running_gateway, settings_for

SERVICE = {"authorization": f"Bearer {WORKER_KEY}"}


def chat(model: str, tag: str) -> dict[str, Any]:
    """A non-streamed request tagged for the mocks' logs."""
    return {"model": model, "messages": [{"role": "user", "content": f"hi [mock tag={tag}]"}]}


def circuit_open(name: str) -> float | None:
    """``chorus_gateway_provider_circuit_open`` of provider ``name``."""
    return REGISTRY.get_sample_value("chorus_gateway_provider_circuit_open", {"provider": name})


def providers(flaky: str, upstream: MockServer, backup: MockServer) -> dict[str, Any]:
    """``flaky`` serves both models (first choice); ``steady`` only ``mock-gpt``."""
    return {
        "providers": [
            provider(flaky, upstream),
            {**provider("steady", backup, priority=1), "models": ["mock-gpt"]},
        ]
    }


async def test_two_failures_open_the_circuit_and_the_provider_is_skipped(
    gateway_redis: RunningRedis, upstream: MockServer, backup: MockServer
) -> None:
    settings = settings_for(
        gateway_redis.url,
        providers("flaky-open", upstream, backup),
        gateway_breaker_failures=2,
        gateway_breaker_cooldown_seconds=60,
    )
    upstream.configure(fault={"mode": "error_before_start"})  # every request, until reset
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, headers=SERVICE, timeout=30) as http,
    ):
        assert circuit_open("flaky-open") == 0
        served = [
            await http.post("/v1/chat/completions", json=chat("mock-gpt", f"fail-{n}"))
            for n in range(2)
        ]
        assert circuit_open("flaky-open") == 1
        skipped = await http.post("/v1/chat/completions", json=chat("mock-gpt", "skipped"))
        alone = await http.post("/v1/chat/completions", json=chat("mock-gpt-mini", "alone"))

    # The first two failed on the flaky provider and fell back; then it was not called.
    for response in (*served, skipped):
        assert response.status_code == 200, response.text
        assert response.headers["x-chorus-provider"] == "steady"
        assert response.json()["choices"][0]["message"]["content"] == completion_text(16)
    tried = await asyncio.to_thread(upstream.requests)
    assert sorted(r["tag"] for r in tried) == ["fail-0", "fail-1"]
    assert [r["status"] for r in tried] == [500, 500]
    # A model only the open provider serves: refused at once, with when to come back.
    assert alone.status_code == 503, alone.text
    assert alone.json()["error"]["code"] == "provider_unavailable"
    assert 55 <= int(alone.headers["retry-after"]) <= 60


async def test_after_the_cooldown_one_probe_closes_the_circuit(
    gateway_redis: RunningRedis, upstream: MockServer, backup: MockServer
) -> None:
    settings = settings_for(
        gateway_redis.url,
        providers("flaky-probe", upstream, backup),
        gateway_breaker_failures=1,
        gateway_breaker_cooldown_seconds=1,
    )
    upstream.configure(fault={"mode": "error_before_start", "count": 1})
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, headers=SERVICE, timeout=30) as http,
    ):
        tripped_at = time.monotonic()  # the circuit opens after this, never before
        failed = await http.post("/v1/chat/completions", json=chat("mock-gpt-mini", "trip"))
        assert failed.status_code == 502, failed.text  # no one else serves mock-gpt-mini
        assert circuit_open("flaky-probe") == 1
        # The provider is healthy again; once the cooldown is over, the next request is the
        # probe that reaches it, and its success closes the circuit.
        deadline = tripped_at + 20
        while True:
            response = await http.post("/v1/chat/completions", json=chat("mock-gpt-mini", "probe"))
            if response.status_code == 200:
                break
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "provider_unavailable"
            assert time.monotonic() < deadline, "the circuit never let a probe through"
            await asyncio.sleep(0.1)
        probed_after = time.monotonic() - tripped_at
        after = await http.post("/v1/chat/completions", json=chat("mock-gpt-mini", "closed"))

    assert probed_after >= 1.0  # never before the cooldown
    assert response.headers["x-chorus-provider"] == "flaky-probe"
    assert circuit_open("flaky-probe") == 0
    assert after.status_code == 200
    tags = [r["tag"] for r in await asyncio.to_thread(upstream.requests)]
    assert tags == ["trip", "probe", "closed"]  # refused requests never reached it
