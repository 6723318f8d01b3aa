"""Per-subject limits enforced across two gateway replicas sharing one Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from chorus_devstack.servers import RunningRedis
from chorus_gateway.domain.token_estimate import estimate_prompt_tokens
from chorus_mock_openai.testing import MockServer

from ..support import WORKER_KEY, UsageJobs, running_gateway, settings_for, settled, until


@pytest.fixture
async def limited(
    gateway_redis: RunningRedis, providers: dict[str, Any], request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, str]]:
    """Two replicas with the limit settings the test passes as its parameter."""
    settings = settings_for(gateway_redis.url, providers, **request.param)
    async with running_gateway(settings) as one, running_gateway(settings) as two:
        yield one, two


def body(text: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    """A request with a known reservation (prompt estimate + max_tokens)."""
    return {
        "model": "mock-gpt",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        **extra,
    }


TPM = 1000
PROMPT = "count me [mock ttft_ms=1500]"
#: Each request reserves exactly 100 tokens: TPM fits exactly ten.
MAX_TOKENS = 100 - estimate_prompt_tokens([{"role": "user", "content": PROMPT}])


@pytest.mark.parametrize(
    "limited",
    [
        {
            "gateway_tokens_per_minute": TPM,
            "gateway_requests_per_minute": 0,
            "gateway_concurrent_streams": 0,
        }
    ],
    indirect=True,
)
async def test_tokens_per_minute_shared_by_two_replicas_admits_exactly_what_fits(
    limited: tuple[str, str], auth: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(url: str) -> httpx.Response:
            return await http.post(
                f"{url}/v1/chat/completions", json=body(PROMPT, MAX_TOKENS), headers=auth
            )

        responses = await asyncio.gather(*(one(limited[i % 2]) for i in range(30)))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == TPM // 100
    assert statuses.count(429) == 30 - TPM // 100
    rejected = next(r for r in responses if r.status_code == 429)
    error = rejected.json()["error"]
    assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
    assert int(rejected.headers["retry-after"]) >= 1
    assert rejected.headers["x-ratelimit-limit-tokens"] == str(TPM)
    assert int(rejected.headers["x-ratelimit-remaining-tokens"]) < 100
    assert rejected.headers["x-ratelimit-reset-tokens"].endswith("s")


@pytest.mark.parametrize(
    "limited",
    [{"gateway_tokens_per_minute": TPM, "gateway_requests_per_minute": 0}],
    indirect=True,
)
async def test_unused_reservation_is_refunded(
    limited: tuple[str, str], auth: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        url = f"{limited[0]}/v1/chat/completions"
        first = await http.post(url, json=body("a [mock tokens=4]", 500), headers=auth)
        second = await http.post(url, json=body("b [mock tokens=4]", 500), headers=auth)
    prompt = estimate_prompt_tokens([{"role": "user", "content": "a [mock tokens=4]"}])
    # Without the refund of the first call's unused tokens, two reservations of 500 + prompt
    # would not fit in 1000; with it, the first call costs what it used.
    assert (first.status_code, second.status_code) == (200, 200)
    remaining = int(second.headers["x-ratelimit-remaining-tokens"])
    assert TPM - (prompt + 4) - (prompt + 500) <= remaining <= TPM - (prompt + 500)


@pytest.mark.parametrize(
    "limited", [{"gateway_requests_per_minute": 3, "gateway_tokens_per_minute": 0}], indirect=True
)
async def test_requests_per_minute_counts_both_replicas(
    limited: tuple[str, str], auth: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        statuses = []
        for url in (limited[0], limited[1], limited[0], limited[1]):
            response = await http.post(
                f"{url}/v1/chat/completions", json=body("hi", 5), headers=auth
            )
            statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429]
    assert response.json()["error"]["type"] == "requests"
    assert response.headers["x-ratelimit-limit-requests"] == "3"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert 15 <= int(response.headers["retry-after"]) <= 21


@pytest.mark.parametrize("limited", [{"gateway_concurrent_streams": 2}], indirect=True)
async def test_concurrent_streams_are_capped_and_slots_come_back(
    limited: tuple[str, str], auth: dict[str, str], upstream: MockServer
) -> None:
    slow = body("slow [mock ttft_ms=800 tag=slot]", 5, stream=True)
    async with httpx.AsyncClient(timeout=30) as http:

        async def stream(url: str) -> int:
            async with http.stream(
                "POST", f"{url}/v1/chat/completions", json=slow, headers=auth
            ) as response:
                await response.aread()
                return response.status_code

        running = [asyncio.create_task(stream(u)) for u in limited]
        await until(lambda: len(upstream.requests(tag="slot")) == 2)  # both admitted
        third = await http.post(
            f"{limited[1]}/v1/chat/completions", json=body("third", 5), headers=auth
        )
        assert third.status_code == 429
        assert "concurrent" in third.json()["error"]["message"]
        assert await asyncio.gather(*running) == [200, 200]
        again = await http.post(
            f"{limited[0]}/v1/chat/completions", json=body("again", 5), headers=auth
        )
        assert again.status_code == 200


@pytest.mark.parametrize(
    "limited", [{"gateway_tokens_per_minute": 50, "gateway_requests_per_minute": 0}], indirect=True
)
async def test_a_request_larger_than_the_limit_is_refused_outright(
    limited: tuple[str, str], auth: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{limited[0]}/v1/chat/completions", json=body("big", 100), headers=auth
        )
    assert response.status_code == 429
    assert "Request too large" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "limited", [{"gateway_requests_per_minute": 2, "gateway_tokens_per_minute": 0}], indirect=True
)
async def test_a_stream_admitted_alongside_its_upstream_call_is_still_refused_exactly(
    limited: tuple[str, str],
    auth: dict[str, str],
    user_id: int,
    upstream: MockServer,
    redis_sync: redis.Redis,
) -> None:
    one, two = limited
    stream = body("spec [mock ttft_ms=300 tag=spec]", 5, stream=True)
    async with httpx.AsyncClient(timeout=30) as http:
        first = await http.post(f"{one}/v1/chat/completions", json=stream, headers=auth)
        # The other replica takes the last request of the minute; replica one's last answer
        # still says one is left, so it sends the next stream upstream while admitting it.
        other = await http.post(f"{two}/v1/chat/completions", json=body("hi", 5), headers=auth)
        refused = await http.post(f"{one}/v1/chat/completions", json=stream, headers=auth)
        again = await http.post(f"{one}/v1/chat/completions", json=stream, headers=auth)
    assert (first.status_code, other.status_code) == (200, 200)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "requests"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "data:" not in refused.text
    # The refused stream's upstream request was abandoned before its first token, and
    # the next one (no headroom left here) was refused without reaching the provider.
    records = await settled(upstream, tag="spec")
    assert [r["outcome"] for r in records] == ["completed", "client_disconnected"]
    assert again.status_code == 429
    jobs = await UsageJobs(redis_sync, subject=f"user:{user_id}").wait(3)
    assert sorted(j["outcome"] for j in jobs) == ["completed", "completed", "error"]
    billed = next(j for j in jobs if j["outcome"] == "error")
    assert (billed["estimated"], billed["completion_tokens"]) == (True, 0)


@pytest.mark.parametrize(
    "limited",
    [
        {
            # What each end user gets of a key: the per-user defaults, 2 requests a minute.
            "gateway_requests_per_minute": 2,
            "gateway_tokens_per_minute": 0,
            "gateway_concurrent_streams": 0,
            "gateway_api_keys": json.dumps(
                [{"name": "worker", "key": WORKER_KEY, "requests_per_minute": 100}]
            ),
        }
    ],
    indirect=True,
)
async def test_a_service_key_calling_for_end_users_gives_each_their_own_limits(
    limited: tuple[str, str],
) -> None:
    """The worker asks for room members: one member cannot spend the key, on any replica."""
    key = {"Authorization": f"Bearer {WORKER_KEY}"}
    rejected_before = _rejections("end_user_requests")
    async with httpx.AsyncClient(timeout=30) as http:

        async def ask(url: str, user: str | None) -> httpx.Response:
            extra = {"user": user} if user is not None else {}
            return await http.post(
                f"{url}/v1/chat/completions",
                json=body("hi [mock tokens=2]", 5, **extra),
                headers=key,
            )

        for_42 = [await ask(limited[i % 2], "42") for i in range(3)]
        for_43 = await ask(limited[1], "43")
        anonymous = [await ask(limited[0], None) for _ in range(3)]

    assert [r.status_code for r in for_42] == [200, 200, 429]
    error = for_42[2].json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "user 42" in error["message"]
    assert for_42[2].headers["x-ratelimit-limit-requests"] == "2"
    assert for_43.status_code == 200  # another member's share is untouched
    assert [r.status_code for r in anonymous] == [200, 200, 200]  # the key's own limit: 100
    assert _rejections("end_user_requests") == rejected_before + 1


def _rejections(limit: str) -> float:
    # The replicas run in this process: the registry is theirs.
    return (
        REGISTRY.get_sample_value("chorus_gateway_ratelimit_rejections_total", {"limit": limit})
        or 0.0
    )
