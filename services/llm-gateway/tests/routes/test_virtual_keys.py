"""Virtual keys: resolved through Redis, revoked on every replica within a second, and
spend budgets that hold exactly across two replicas."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
from openai import AsyncOpenAI, RateLimitError

from chorus_common.tokens import TokenService
from chorus_common.virtual_keys import Budget, KeyRecord
from chorus_devstack.servers import RunningRedis
from chorus_gateway.domain.token_estimate import estimate_prompt_tokens
from chorus_mock_openai.testing import MockServer

from ..support import (
    UsageJobs,
    hang_up_after,
    issue_virtual_key,
    provider,
    revoke_virtual_key,
    running_gateway,
    set_user_budget,
    settings_for,
)

#: Per 1M tokens: a prompt token costs 1 micro, a completion token 2 micros.
PRICES = {"mock-gpt": {"input": 1.0, "output": 2.0}, "mock-gpt-mini": {"input": 0.5, "output": 1}}


@pytest.fixture(scope="module")
async def priced(
    gateway_redis: RunningRedis, upstream: MockServer, backup: MockServer
) -> AsyncIterator[tuple[str, str]]:
    """Two replicas with priced models, trusting a cached key for a whole minute: only the
    invalidation channel can make a revocation apply within a second."""
    providers = {
        "providers": [
            provider("primary", upstream, prices=PRICES),
            provider("backup", backup, priority=1, prices=PRICES),
        ],
        "aliases": {"assistant": "mock-gpt"},
    }
    settings = settings_for(gateway_redis.url, providers, gateway_key_cache_seconds=60.0)
    async with running_gateway(settings) as one, running_gateway(settings) as two:
        yield one, two


@pytest.fixture
async def listening(priced: tuple[str, str], redis_sync: redis.Redis) -> tuple[str, str]:
    """Both replicas, once both listen on the invalidation channel."""
    deadline = time.monotonic() + 10
    while True:
        counts = dict(await asyncio.to_thread(redis_sync.pubsub_numsub, "chorus:vkey:changed"))
        if counts.get(b"chorus:vkey:changed", 0) >= 2:
            return priced
        assert time.monotonic() < deadline, "replicas never subscribed"
        await asyncio.sleep(0.02)


def record(**overrides: Any) -> KeyRecord:
    """A user-owned key of a fresh user."""
    user_id = secrets.randbelow(10**9) + 1
    values: dict[str, Any] = {
        "id": secrets.randbelow(10**9) + 1,
        "name": "test key",
        "owner": f"user:{user_id}",
        "user_id": user_id,
        "team_id": None,
    }
    values.update(overrides)
    return KeyRecord(**values)


def chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "mock-gpt", "messages": [{"role": "user", "content": content}], **extra}


async def test_a_virtual_key_calls_through_the_sdk_and_its_usage_names_the_key(
    listening: tuple[str, str], redis_sync: redis.Redis
) -> None:
    key = record()
    secret = issue_virtual_key(redis_sync, key)
    sdk = AsyncOpenAI(base_url=f"{listening[0]}/v1", api_key=secret, max_retries=0)
    try:
        answer = await sdk.chat.completions.create(**chat(max_tokens=5))
    finally:
        await sdk.close()
    assert answer.usage is not None
    (usage,) = await UsageJobs(redis_sync, subject=f"vkey:{key.id}").wait(1)
    assert usage["key_id"] == key.id
    assert usage["user_id"] == key.user_id
    prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
    assert usage["cost_micros"] == prompt * 1 + completion * 2


async def test_unknown_expired_and_disallowed_keys_are_refused(
    listening: tuple[str, str], redis_sync: redis.Redis
) -> None:
    expired = issue_virtual_key(redis_sync, record(expires_at=time.time() - 1))
    narrow = issue_virtual_key(redis_sync, record(models=("mock-gpt-mini",)))
    async with httpx.AsyncClient(base_url=listening[1], timeout=30) as http:

        async def call(secret: str) -> httpx.Response:
            headers = {"authorization": f"Bearer {secret}"}
            return await http.post("/v1/chat/completions", json=chat(), headers=headers)

        unknown = await call("sk-chorus-" + "x" * 43)
        assert unknown.status_code == 401
        assert unknown.json()["error"]["code"] == "invalid_api_key"
        assert "x" * 10 not in unknown.text  # only the key's ends are shown
        late = await call(expired)
        assert late.status_code == 401
        assert "expired" in late.json()["error"]["message"]
        refused = await call(narrow)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "model_not_allowed"


async def test_a_revoked_key_is_refused_by_both_replicas_within_a_second(
    listening: tuple[str, str], redis_sync: redis.Redis
) -> None:
    secret = issue_virtual_key(redis_sync, record())
    headers = {"authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(timeout=30) as http:

        async def status(url: str) -> int:
            response = await http.post(
                f"{url}/v1/chat/completions", json=chat(max_tokens=1), headers=headers
            )
            return response.status_code

        # Both replicas have the key cached (for a minute, by their settings).
        assert [await status(url) for url in (*listening, *listening)] == [200] * 4
        revoked_at = time.monotonic()
        await asyncio.to_thread(revoke_virtual_key, redis_sync, secret)
        refused: dict[str, float] = {}
        while len(refused) < 2:
            for url in listening:
                if url not in refused and await status(url) == 401:
                    refused[url] = time.monotonic() - revoked_at
            assert time.monotonic() - revoked_at < 1.0, f"still accepted after 1 s: {refused}"


async def test_a_missed_invalidation_is_bounded_by_the_cache_ttl(
    gateway_redis: RunningRedis, providers: dict[str, Any], redis_sync: redis.Redis
) -> None:
    settings = settings_for(gateway_redis.url, providers, gateway_key_cache_seconds=0.5)
    secret = issue_virtual_key(redis_sync, record())
    headers = {"authorization": f"Bearer {secret}"}
    async with running_gateway(settings) as url, httpx.AsyncClient(timeout=30) as http:
        first = await http.post(f"{url}/v1/chat/completions", json=chat(), headers=headers)
        assert first.status_code == 200
        # Deleted without a message (as if the publish was lost).
        await asyncio.to_thread(redis_sync.delete, *redis_sync.keys("chorus:vkey:*"))
        deadline = time.monotonic() + 5
        while True:
            response = await http.post(f"{url}/v1/chat/completions", json=chat(), headers=headers)
            if response.status_code == 401:
                break
            assert time.monotonic() < deadline


PROMPT = "spend [mock ttft_ms=400]"
#: The mock answers exactly max_tokens tokens when its text is longer, and counts the
#: prompt as the gateway estimates it: each call's real cost is its worst case, so the
#: count admitted does not depend on when the first ones settle.
MAX_TOKENS = 10
PROMPT_TOKENS = estimate_prompt_tokens([{"role": "user", "content": PROMPT}])
#: The worst case reserved per request: the prompt estimate and max_tokens at the price.
WORST = PROMPT_TOKENS * 1 + MAX_TOKENS * 2
FITS = 7


async def test_a_budget_admits_exactly_what_fits_across_two_replicas_and_settles_real_spend(
    listening: tuple[str, str], redis_sync: redis.Redis, upstream: MockServer, backup: MockServer
) -> None:
    budget = FITS * WORST + WORST - 1  # room for FITS, not for one more
    key_id = secrets.randbelow(10**9) + 1
    key = record(id=key_id, budgets=(Budget(f"vkey:{key_id}", budget, "day"),))
    secret = issue_virtual_key(redis_sync, key)
    headers = {"authorization": f"Bearer {secret}"}
    body = chat(PROMPT, max_tokens=MAX_TOKENS, stream=True)
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def one(url: str) -> tuple[int, dict[str, Any] | None, bytes]:
            async with http.stream(
                "POST", f"{url}/v1/chat/completions", json=body, headers=headers
            ) as response:
                raw = await response.aread()
                error = response.json()["error"] if response.status_code != 200 else None
                return response.status_code, error, raw

        results = await asyncio.gather(*(one(listening[i % 2]) for i in range(100)))

    statuses = [status for status, _, _ in results]

    assert statuses.count(200) == FITS
    assert statuses.count(429) == 100 - FITS
    error = next(e for s, e, _ in results if s == 429)
    assert error is not None
    assert (error["code"], error["type"]) == ("budget_exceeded", "insufficient_quota")
    assert all(raw.rstrip().endswith(b"data: [DONE]") for s, _, raw in results if s == 200)
    # Refused before any upstream call: the providers saw only the admitted ones.
    seen = await asyncio.to_thread(lambda: upstream.requests() + backup.requests())
    assert len(seen) == FITS
    # Settled to what was really used, never above the budget.
    jobs = await UsageJobs(redis_sync, subject=f"vkey:{key.id}").wait(FITS)
    assert len(jobs) == FITS
    spent = sum(job["cost_micros"] for job in jobs)
    assert all(0 < job["cost_micros"] <= WORST for job in jobs)
    (counter,) = redis_sync.keys(f"chorus:gw:spend:{{{key.owner}}}:vkey:{key.id}:d*")
    deadline = time.monotonic() + 5
    while int(redis_sync.get(counter) or 0) != spent:
        assert time.monotonic() < deadline, (redis_sync.get(counter), spent)
        await asyncio.sleep(0.02)
    assert spent <= budget
    assert redis_sync.pttl(counter) > 86_400_000  # the day's end, plus a day to settle


async def test_a_team_budget_is_shared_by_all_of_the_teams_keys(
    listening: tuple[str, str], redis_sync: redis.Redis
) -> None:
    team = secrets.randbelow(10**9) + 1
    shared = Budget(f"team:{team}", WORST, "month")  # one request's worst case, team-wide
    first, second = (
        issue_virtual_key(
            redis_sync,
            record(owner=f"team:{team}", user_id=None, team_id=team, budgets=(shared,)),
        )
        for _ in range(2)
    )
    async with httpx.AsyncClient(timeout=30) as http:

        async def call(secret: str) -> httpx.Response:
            headers = {"authorization": f"Bearer {secret}"}
            return await http.post(
                f"{listening[0]}/v1/chat/completions",
                json=chat("hi", max_tokens=MAX_TOKENS),
                headers=headers,
            )

        # The first call takes the budget below what another one needs.
        assert (await call(first)).status_code == 200
        refused = await call(second)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert int(refused.headers["retry-after"]) >= 1


async def test_a_user_budget_holds_over_their_keys_and_their_token_across_two_replicas(
    listening: tuple[str, str], redis_sync: redis.Redis, tokens: TokenService
) -> None:
    user = secrets.randbelow(10**9) + 1
    budget = FITS * WORST + WORST - 1  # room for FITS, not for one more
    mine = Budget(f"user:{user}", budget, "day")
    await asyncio.to_thread(set_user_budget, redis_sync, user, mine)
    # Two of the user's keys, each with a budget of its own far above the user's.
    keys = [
        record(
            id=(key_id := secrets.randbelow(10**9) + 1),
            owner=f"user:{user}",
            user_id=user,
            budgets=(Budget(f"vkey:{key_id}", 10**9, "day"),),
        )
        for _ in range(2)
    ]
    credentials = [issue_virtual_key(redis_sync, k) for k in keys] + [tokens.issue(user)]
    subjects = [f"vkey:{k.id}" for k in keys] + [f"user:{user}"]
    body = chat(PROMPT, max_tokens=MAX_TOKENS, stream=True)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as http:

        async def one(i: int) -> tuple[int, dict[str, Any] | None]:
            headers = {"authorization": f"Bearer {credentials[i % 3]}"}
            url = f"{listening[i % 2]}/v1/chat/completions"
            async with http.stream("POST", url, json=body, headers=headers) as response:
                await response.aread()
                error = response.json()["error"] if response.status_code != 200 else None
                return response.status_code, error

        results = await asyncio.gather(*(one(i) for i in range(60)))
        statuses = [status for status, _ in results]
        assert statuses.count(200) == FITS, statuses
        assert statuses.count(429) == 60 - FITS
        errors = [e for s, e in results if s == 429 and e is not None]
        assert {e["code"] for e in errors} == {"budget_exceeded"}
        assert all(f"user:{user}" in e["message"] for e in errors)
        # What the key and the token spent is settled into the one counter, never above.
        jobs = [job for s in subjects for job in UsageJobs(redis_sync, subject=s).now()]
        deadline = time.monotonic() + 5
        while len(jobs) < FITS:
            assert time.monotonic() < deadline, jobs
            await asyncio.sleep(0.02)
            jobs = [job for s in subjects for job in UsageJobs(redis_sync, subject=s).now()]
        assert len(jobs) == FITS
        spent = sum(job["cost_micros"] for job in jobs)
        (counter,) = redis_sync.keys(f"chorus:gw:spend:{{user:{user}}}:user:{user}:d*")
        while int(redis_sync.get(counter) or 0) != spent:
            assert time.monotonic() < deadline, (redis_sync.get(counter), spent)
            await asyncio.sleep(0.02)
        assert spent <= budget
        # Removing the budget applies on both replicas within a second, though they
        # cache it for a minute: the api's message makes them forget it.
        await asyncio.to_thread(set_user_budget, redis_sync, user, None)
        removed_at = time.monotonic()

        async def quick(i: int) -> int:
            headers = {"authorization": f"Bearer {credentials[i % 3]}"}
            url = f"{listening[i % 2]}/v1/chat/completions"
            response = await http.post(url, json=chat(max_tokens=1), headers=headers)
            return response.status_code

        while (statuses := await asyncio.gather(*(quick(i) for i in range(6)))) != [200] * 6:
            assert time.monotonic() - removed_at < 1.0, f"still refused after 1 s: {statuses}"


async def test_responses_and_embeddings_are_priced_and_held_to_the_budget(
    listening: tuple[str, str], redis_sync: redis.Redis
) -> None:
    key_id = secrets.randbelow(10**9) + 1
    # input 2 + output 5 tokens at 1 and 2 micros: 12; the budget fits one such call.
    key = record(id=key_id, budgets=(Budget(f"vkey:{key_id}", 15, "total"),))
    secret = issue_virtual_key(redis_sync, key)
    sdk = AsyncOpenAI(base_url=f"{listening[1]}/v1", api_key=secret, max_retries=0)
    try:
        answer = await sdk.responses.create(model="mock-gpt", input="say it", max_output_tokens=5)
        assert answer.usage is not None
        with pytest.raises(RateLimitError) as refused:
            await sdk.responses.create(model="mock-gpt", input="say it", max_output_tokens=5)
        assert refused.value.code == "budget_exceeded"
        # 3 micros left: an embedding of 2 input tokens still fits.
        embedded = await sdk.embeddings.create(model="mock-gpt", input="hello")
        assert embedded.usage.prompt_tokens == 2
    finally:
        await sdk.close()
    jobs = await UsageJobs(redis_sync, subject=f"vkey:{key_id}").wait(2)
    assert sorted(job["cost_micros"] for job in jobs) == [2, 12]


async def test_a_stream_cut_off_by_its_client_settles_what_was_delivered(
    listening: tuple[str, str], redis_sync: redis.Redis
) -> None:
    key_id = secrets.randbelow(10**9) + 1
    key = record(id=key_id, budgets=(Budget(f"vkey:{key_id}", 10**6, "day"),))
    secret = issue_virtual_key(redis_sync, key)
    body = chat("[mock tokens=200 inter_token_ms=20]", stream=True, max_tokens=200)
    headers = {"authorization": f"Bearer {secret}"}
    await hang_up_after(listening[0], body, headers)
    (job,) = await UsageJobs(redis_sync, subject=f"vkey:{key_id}").wait(1)
    assert (job["outcome"], job["estimated"]) == ("cut_off", True)
    worst = job["prompt_tokens"] * 1 + 200 * 2
    assert 0 < job["cost_micros"] < worst
    assert job["cost_micros"] == job["prompt_tokens"] + 2 * job["completion_tokens"]
    (counter,) = redis_sync.keys(f"chorus:gw:spend:{{{key.owner}}}:vkey:{key_id}:d*")
    deadline = time.monotonic() + 5
    while int(redis_sync.get(counter) or 0) != job["cost_micros"]:
        assert time.monotonic() < deadline, (redis_sync.get(counter), job)
        await asyncio.sleep(0.02)


async def test_more_keys_never_mean_more_capacity_than_their_owner_has(
    gateway_redis: RunningRedis, providers: dict[str, Any], redis_sync: redis.Redis
) -> None:
    settings = settings_for(gateway_redis.url, providers, gateway_concurrent_streams=2)
    owner = secrets.randbelow(10**9) + 1
    # Each key asks for more than the default; it gets the default at most, and both
    # keys together get what their owner gets.
    secrets_ = [
        issue_virtual_key(
            redis_sync,
            record(
                id=secrets.randbelow(10**9) + 1,
                owner=f"user:{owner}",
                user_id=owner,
                concurrent_streams=100,
            ),
        )
        for _ in range(2)
    ]
    body = chat("[mock ttft_ms=400]", stream=True, max_tokens=2)
    async with running_gateway(settings) as url, httpx.AsyncClient(timeout=30) as http:

        async def one(secret: str) -> httpx.Response:
            headers = {"authorization": f"Bearer {secret}"}
            return await http.post(f"{url}/v1/chat/completions", json=body, headers=headers)

        answers = await asyncio.gather(*(one(secrets_[i % 2]) for i in range(6)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 2, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert f"user:{owner}" in refused.json()["error"]["message"]
