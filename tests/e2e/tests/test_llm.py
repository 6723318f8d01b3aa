"""Journey 4: the LLM gateway through the ingress, with the openai SDK and the playground.

Streams are not buffered on the way: the first token reaches the client while the upstream
is still producing the rest (a causal check, not a timing threshold).
"""

from __future__ import annotations

import os
import time

import asyncpg
import httpx
import openai
import pytest
from openai import AsyncOpenAI

from chorus_devstack.stack import Stack
from chorus_e2e.accounts import sign_up
from chorus_e2e.polling import eventually
from chorus_mock_openai import completion_text

#: Slow enough that a buffering proxy would deliver the first token ~2 s late.
SLOW = "inter_token_ms=250 tokens=8"


async def upstream_record(ops: httpx.AsyncClient, stack: Stack, tag: str) -> dict[str, object]:
    """The mock upstream's record of the finished request tagged ``tag``."""
    response = await ops.get(
        f"{stack.url('mock-openai')}/_mock/requests", params={"tag": tag, "wait_ms": 10_000}
    )
    [record] = response.json()["data"]
    return dict(record)


async def test_the_openai_sdk_streams_through_the_ingress_with_the_users_token(
    stack: Stack,
    ingress: str,
    http: httpx.AsyncClient,
    ops: httpx.AsyncClient,
    db: asyncpg.Connection,
) -> None:
    user = await sign_up(http, "developer")
    client = AsyncOpenAI(base_url=f"{ingress}/v1", api_key=user.token, max_retries=0)
    async with client:
        # Users see and call the models listed for them (GATEWAY_USER_MODELS: the assistant);
        # to them the provider's own models do not exist.
        models = [m.id async for m in client.models.list()]
        assert models == ["assistant"]
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="mock-gpt-mini", messages=[{"role": "user", "content": "hi"}]
            )

        tag = f"sdk-{os.urandom(4).hex()}"
        stream = await client.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": f"Say something [mock {SLOW} tag={tag}]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, first_at, usage = "", None, None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first_at = first_at or time.time()
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                usage = chunk.usage

    assert text == completion_text(8)
    assert usage is not None
    assert usage.completion_tokens == 8
    record = await upstream_record(ops, stack, tag)
    assert first_at is not None
    assert first_at < float(str(record["ended_at"])), "the first token waited for the last"

    rows = await eventually(
        lambda: db.fetch(
            "SELECT subject, model, completion_tokens, outcome FROM llm_usage_events "
            "WHERE user_id = $1",
            user.id,
        ),
        what="usage recorded for the user",
    )
    assert [tuple(r) for r in rows] == [(f"user:{user.id}", "mock-gpt", 8, "completed")]


async def test_the_playground_streams_data_lines_and_done_without_buffering(
    stack: Stack, http: httpx.AsyncClient, ops: httpx.AsyncClient
) -> None:
    user = await sign_up(http, "player")
    tag = f"play-{os.urandom(4).hex()}"
    lines: list[str] = []
    first_at = None
    async with http.stream(
        "POST",
        "/chat/stream",
        json={"content": f"Hello [mock {SLOW} tag={tag}]"},
        headers=user.auth,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data:") and first_at is None:
                first_at = time.time()
            lines.append(line)

    data = [line.removeprefix("data: ") for line in lines if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    assert "".join(data[:-1]) == completion_text(8)
    assert not any(line.startswith("event: error") for line in lines)
    record = await upstream_record(ops, stack, tag)
    assert first_at is not None
    assert first_at < float(str(record["ended_at"])), "the first token waited for the last"
