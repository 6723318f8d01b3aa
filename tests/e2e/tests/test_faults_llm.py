"""Faults of the LLM upstream: error before the stream, error mid-stream, hangs.

Through the ingress, the openai SDK either gets its completion from the fallback provider
or a clear error — within seconds, never a hang; in a room, members get an `ai.done` with
the error. The mock upstream's request log shows the gateway let go of every hanging call.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import openai
import orjson
import pytest
from openai import AsyncOpenAI

from chorus_client import RoomClient
from chorus_devstack.stack import Stack
from chorus_e2e.accounts import Account, sign_up
from chorus_e2e.chat import answered
from chorus_mock_openai import completion_text

#: However the upstream fails, the client hears about it within this (a hang is a bug).
NO_HANG = 30.0


@pytest.fixture
async def user(http: httpx.AsyncClient) -> Account:
    """A signed-up user calling models with their own token."""
    return await sign_up(http, "llm-user")


@pytest.fixture
async def sdk(ingress: str, user: Account) -> AsyncIterator[AsyncOpenAI]:
    """The openai SDK pointed at the ingress, authenticated as the user."""
    async with AsyncOpenAI(base_url=f"{ingress}/v1", api_key=user.token, max_retries=0) as client:
        yield client


async def upstream_calls(ops: httpx.AsyncClient, stack: Stack, tag: str) -> list[dict[str, object]]:
    """The mock's records of every attempt tagged ``tag``, once none is in progress."""
    response = await ops.get(
        f"{stack.url('mock-openai')}/_mock/requests", params={"tag": tag, "wait_ms": 15_000}
    )
    return list(response.json()["data"])


async def stream_text(sdk: AsyncOpenAI, content: str) -> str:
    """Stream a completion of ``content``; the text received (raises on a stream error)."""
    stream = await sdk.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": content}], stream=True
    )
    text = ""
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    return text


async def test_an_error_before_the_stream_falls_back_to_the_next_provider(
    stack: Stack, sdk: AsyncOpenAI, ops: httpx.AsyncClient
) -> None:
    tag = f"fb-{os.urandom(4).hex()}"
    await ops.post(
        f"{stack.url('mock-openai')}/_mock/config",
        json={"fault": {"mode": "error_before_start", "count": 1}},
    )
    async with asyncio.timeout(NO_HANG):
        raw = await sdk.chat.completions.with_raw_response.create(
            model="assistant",
            messages=[{"role": "user", "content": f"hi [mock tag={tag}]"}],
            stream=True,
        )
        text = ""
        async for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    assert text == completion_text(16)
    assert raw.headers["x-chorus-provider"] == "backup"
    outcomes = [r["outcome"] for r in await upstream_calls(ops, stack, tag)]
    assert outcomes == ["fault", "completed"]


async def test_an_error_mid_stream_reaches_the_client_as_an_error(
    sdk: AsyncOpenAI, stack: Stack, ops: httpx.AsyncClient
) -> None:
    tag = f"mid-{os.urandom(4).hex()}"
    with pytest.raises(openai.APIError):
        async with asyncio.timeout(NO_HANG):
            await stream_text(sdk, f"hi [mock fault=error_mid_stream fault_after=3 tag={tag}]")
    # Tokens were already out: no retry behind the client's back.
    assert [r["outcome"] for r in await upstream_calls(ops, stack, tag)] == ["fault"]


@pytest.mark.parametrize("fault", ["hang", "hang_mid_stream"])
async def test_a_hanging_upstream_is_given_up_on_and_the_client_told(
    fault: str, sdk: AsyncOpenAI, stack: Stack, ops: httpx.AsyncClient
) -> None:
    tag = f"{fault}-{os.urandom(4).hex()}"
    with pytest.raises(openai.APIError):
        async with asyncio.timeout(NO_HANG):
            await stream_text(sdk, f"hi [mock fault={fault} fault_after=2 tag={tag}]")
    calls = await upstream_calls(ops, stack, tag)
    assert calls, "the upstream was called"
    # The gateway hung up on every stuck upstream call (none left open).
    assert {r["outcome"] for r in calls} == {"client_disconnected"}


@pytest.mark.parametrize("fault", ["error_mid_stream", "hang"])
async def test_a_failing_upstream_never_leaves_a_room_waiting_for_the_assistant(
    fault: str, ingress: str, http: httpx.AsyncClient, user: Account
) -> None:
    room = f"llmfault-{os.urandom(4).hex()}"
    other = await sign_up(http, "room-mate")
    async with (
        RoomClient([ingress], room, user.token) as asker,
        RoomClient([ingress], room, other.token) as mate,
    ):
        await asker.wait_subscribed()
        await mate.wait_subscribed()
        await asker.say(f"@assistant tell me [mock fault={fault} fault_after=2]")
        await asker.wait_for(lambda: bool(asker.messages()))
        question = next(e for e in asker.events if e["type"] == "message")
        for client in (asker, mate):
            await client.wait_for(answered(client, question["id"]), timeout=NO_HANG)
    for client in (asker, mate):
        [done] = [e for e in client.events if e["type"] == "ai.done"]
        assert done["data"]["error"]["code"], done
        deltas = "".join(e["data"]["delta"] for e in client.events if e["type"] == "ai.delta")
        assert done["data"]["message"] == deltas  # the text so far, nothing invented
        # What the provider said stays in the logs: the room gets our words and a code.
        assert "The server had an error" not in done["data"]["error"]["message"]
        assert "mock" not in orjson.dumps(done["data"]["error"]).decode().lower()
