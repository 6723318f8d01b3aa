"""A client going away is noticed at once, whatever the handler is waiting on.

Each request here would run for a minute (a long first-token delay, or slow tokens), and
the record is read with a 5 s wait: it can only have settled because the mock noticed the
client leave while it was sleeping. The detection latency itself is a figure of
``bench/gateway_llm.py`` (disconnect → upstream cancel, direct to the mock).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from chorus_mock_openai.testing import MockServer

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]


async def test_close_mid_stream_is_recorded_while_the_next_token_is_due(
    http: httpx.AsyncClient, mock: MockServer
) -> None:
    body = {"model": "mock-gpt", "messages": MESSAGES, "stream": True}
    headers = {"x-mock-inter-token-ms": "300", "x-mock-tokens": "200", "x-mock-tag": "mid"}
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: ")
            if seen == 3:
                break
        closed_at = time.time()
    # Leaving the block closes the half-read response, and so the connection.

    (record,) = mock.settled(tag="mid")
    assert record["outcome"] == "client_disconnected"
    assert record["disconnected_at"] >= closed_at
    assert 2 <= record["tokens_sent"] < 200
    assert record["finish_reason"] is None


async def test_close_while_waiting_for_first_token(
    http: httpx.AsyncClient, mock: MockServer
) -> None:
    body = {"model": "mock-gpt", "messages": MESSAGES, "stream": True}
    headers = {"x-mock-ttft-ms": "60000", "x-mock-tag": "ttft"}
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        closed_at = time.time()

    (record,) = mock.settled(tag="ttft")
    assert record["outcome"] == "client_disconnected"
    assert record["tokens_sent"] == 0
    assert record["first_token_at"] is None
    assert record["disconnected_at"] >= closed_at


async def test_timeout_on_non_streamed_request(http: httpx.AsyncClient, mock: MockServer) -> None:
    body = {"model": "mock-gpt", "messages": MESSAGES}
    headers = {"x-mock-ttft-ms": "60000", "x-mock-tag": "slow"}
    with pytest.raises(httpx.ReadTimeout):
        await http.post(
            "/v1/chat/completions",
            json=body,
            headers=headers,
            timeout=httpx.Timeout(5, read=0.2),
        )

    (record,) = mock.settled(tag="slow")
    assert record["outcome"] == "client_disconnected"
    assert record["status"] is None


async def test_sdk_stream_close(client: AsyncOpenAI, mock: MockServer) -> None:
    stream = await client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "hi [mock inter_token_ms=300 tokens=200 tag=sdk]"}],
        stream=True,
    )
    async for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    await stream.close()

    (record,) = mock.settled(tag="sdk")
    assert record["outcome"] == "client_disconnected"
    assert record["tokens_sent"] < 200


async def test_finished_stream_is_not_a_disconnect(
    http: httpx.AsyncClient, mock: MockServer
) -> None:
    body = {"model": "mock-gpt", "messages": MESSAGES, "stream": True}
    response = await http.post(
        "/v1/chat/completions", json=body, headers={"x-mock-inter-token-ms": "1"}
    )

    assert response.text.endswith("data: [DONE]\n\n")
    (record,) = mock.settled()
    assert record["outcome"] == "completed"
    assert record["disconnected_at"] is None
