"""Embeddings, responses and legacy completions through the gateway, with the SDK: the
provider's answer relayed as is, usage recorded, limits and budgets applied alike."""

from __future__ import annotations

import httpx
import redis
from openai import AsyncOpenAI

from chorus_common.virtual_keys import Budget, KeyRecord

from ..support import UsageJobs, issue_virtual_key


async def test_embeddings_through_the_sdk_are_the_providers_and_recorded(
    client: AsyncOpenAI, direct: AsyncOpenAI, usage_jobs: UsageJobs
) -> None:
    via = await client.embeddings.create(model="mock-gpt", input=["hello", "world!"])
    straight = await direct.embeddings.create(model="mock-gpt", input=["hello", "world!"])
    assert [e.embedding for e in via.data] == [e.embedding for e in straight.data]
    assert via.usage.prompt_tokens == 4
    (usage,) = await usage_jobs.wait(1)
    assert (usage["model"], usage["prompt_tokens"], usage["completion_tokens"]) == (
        "mock-gpt",
        4,
        0,
    )
    assert usage["outcome"] == "completed"


async def test_responses_whole_and_streamed_through_the_sdk(
    client: AsyncOpenAI, usage_jobs: UsageJobs
) -> None:
    whole = await client.responses.create(model="mock-gpt", input="say it", max_output_tokens=5)
    assert whole.output_text.split() == ["Chorus", "mock", "streaming", "reply:", "the"]
    stream = await client.responses.create(model="mock-gpt", input="say it again", stream=True)
    kinds, text, final = [], "", None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            final = event.response
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert final is not None
    assert final.output_text == text
    jobs = sorted(await usage_jobs.wait(2), key=lambda u: u["completion_tokens"])
    assert [(u["prompt_tokens"], u["completion_tokens"]) for u in jobs] == [(2, 5), (3, 16)]


async def test_legacy_completions_streamed_with_usage_through_the_sdk(
    client: AsyncOpenAI, usage_jobs: UsageJobs
) -> None:
    stream = await client.completions.create(
        model="mock-gpt", prompt="once upon", stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].text
        if chunk.usage is not None:
            usage = chunk.usage
    # No max_tokens: OpenAI's default of 16 for this endpoint, said to the provider.
    assert usage is not None
    assert usage.completion_tokens == 16
    assert len(text.split()) == 16
    whole = await client.completions.create(model="mock-gpt", prompt="x", max_tokens=2)
    assert whole.choices[0].text.split() == ["Chorus", "mock"]
    jobs = await usage_jobs.wait(2)
    assert sorted(u["completion_tokens"] for u in jobs) == [2, 16]


async def test_the_other_endpoints_check_their_bodies_and_budgets(
    gateway_url: str, auth: dict[str, str], redis_sync: redis.Redis
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
        missing = await http.post("/v1/embeddings", json={"model": "mock-gpt"}, headers=auth)
        assert missing.status_code == 400
        assert missing.json()["error"]["param"] == "input"
        nul = await http.post(
            "/v1/responses", json={"model": "mock-gpt", "input": "a\u0000"}, headers=auth
        )
        assert nul.status_code == 400
        unknown = await http.post(
            "/v1/completions", json={"model": "nope", "prompt": "x"}, headers=auth
        )
        assert unknown.status_code == 404
        # A budget of nothing refuses a priced call — here the models are unpriced, so an
        # exhausted budget still admits them (they cost nothing), and says so in usage.
        secret = issue_virtual_key(
            redis_sync,
            KeyRecord(
                id=991,
                name="k",
                owner="user:991",
                user_id=991,
                team_id=None,
                budgets=(Budget("vkey:991", 0, "total"),),
            ),
        )
        free = await http.post(
            "/v1/embeddings",
            json={"model": "mock-gpt", "input": "x"},
            headers={"authorization": f"Bearer {secret}"},
        )
        assert free.status_code == 200
