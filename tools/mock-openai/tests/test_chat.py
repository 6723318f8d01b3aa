"""The chat completions endpoint: OpenAI's wire format, via the SDK and raw HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import AsyncOpenAI

from chorus_mock_openai import completion_text, count_prompt_tokens
from chorus_mock_openai.testing import MockServer

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
PROMPT_TOKENS = count_prompt_tokens(["hello"])


def sse_payloads(body: str) -> list[str]:
    """The `data:` payloads of an SSE body, asserting OpenAI's exact framing."""
    assert body.endswith("\n\n")
    events = body[:-2].split("\n\n")
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    return [event[len("data: ") :] for event in events]


async def test_non_streamed_completion(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="mock-gpt", messages=MESSAGES)

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "mock-gpt"
    assert completion.system_fingerprint
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == completion_text(16)
    assert choice.message.refusal is None
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 16
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.total_tokens == PROMPT_TOKENS + 16
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.completion_tokens_details is not None


async def test_non_streamed_wire_fields(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions", json={"model": "mock-gpt", "messages": MESSAGES}
    )

    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    ]
    assert body["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": completion_text(16),
            "refusal": None,
            "annotations": [],
        },
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert set(body["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    }


async def test_stream_with_usage(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="mock-gpt",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    contents = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert "".join(c or "" for c in contents) == completion_text(16)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-2].choices[0].delta.content is None
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(contents) == 16
    assert usage_chunk.usage.prompt_tokens == PROMPT_TOKENS
    assert usage_chunk.usage.total_tokens == PROMPT_TOKENS + 16
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_without_usage(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="mock-gpt", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]

    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == completion_text(16)


async def test_raw_stream_framing_and_headers(http: httpx.AsyncClient) -> None:
    body = {
        "model": "mock-gpt",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 2,
    }
    response = await http.post("/v1/chat/completions", json=body)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-request-id"].startswith("req_")
    assert "content-length" not in response.headers
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    head = {k: chunks[0][k] for k in ("id", "object", "created", "model", "service_tier")}
    assert head["object"] == "chat.completion.chunk"
    for chunk in chunks:
        assert list(chunk) == [
            "id",
            "object",
            "created",
            "model",
            "service_tier",
            "system_fingerprint",
            "choices",
            "usage",
        ]
        assert {k: chunk[k] for k in head} == head
    deltas = [chunk["choices"][0] for chunk in chunks[:-1]]
    assert deltas == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        },
        {"index": 0, "delta": {"content": "Chorus"}, "logprobs": None, "finish_reason": None},
        {"index": 0, "delta": {"content": " mock"}, "logprobs": None, "finish_reason": None},
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"},
    ]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 2


async def test_raw_stream_without_usage_has_no_usage_key(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions", json={"model": "mock-gpt", "messages": MESSAGES, "stream": True}
    )

    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    assert all("usage" not in orjson.loads(p) for p in payloads[:-1])


@pytest.mark.parametrize("limit_field", ["max_tokens", "max_completion_tokens"])
async def test_token_limit_cuts_with_finish_reason_length(
    client: AsyncOpenAI, limit_field: str
) -> None:
    completion = await client.chat.completions.create(
        model="mock-gpt", messages=MESSAGES, extra_body={limit_field: 3}
    )

    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == completion_text(3)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


async def test_stream_cut_by_max_tokens(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="mock-gpt", messages=MESSAGES, stream=True, max_tokens=4
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[-1].choices[0].finish_reason == "length"
    assert sum(1 for c in chunks if c.choices[0].delta.content) == 4


async def test_limit_above_length_finishes_with_stop(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="mock-gpt", messages=MESSAGES, max_tokens=16
    )

    assert completion.choices[0].finish_reason == "stop"


async def test_unknown_model_is_not_found(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-x", messages=MESSAGES)

    assert caught.value.body == {
        "message": "The model `gpt-x` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


async def test_missing_key_is_unauthorized(mock: MockServer) -> None:
    async with httpx.AsyncClient(base_url=mock.base_url) as anonymous:
        response = await anonymous.post(
            "/v1/chat/completions", json={"model": "mock-gpt", "messages": MESSAGES}
        )

    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("You didn't provide an API key.")
    assert mock.requests()[0]["outcome"] == "rejected"


async def test_auth_can_be_switched_off(mock: MockServer) -> None:
    mock.configure(require_auth=False)
    async with httpx.AsyncClient(base_url=mock.base_url) as anonymous:
        response = await anonymous.post(
            "/v1/chat/completions", json={"model": "mock-gpt", "messages": MESSAGES}
        )

    assert response.status_code == 200


async def test_content_is_deterministic(client: AsyncOpenAI) -> None:
    first = await client.chat.completions.create(model="mock-gpt", messages=MESSAGES, stream=True)
    second = await client.chat.completions.create(model="mock-gpt", messages=MESSAGES)

    streamed = "".join([c.choices[0].delta.content or "" async for c in first])
    assert streamed == second.choices[0].message.content


async def test_time_to_first_token_is_applied(client: AsyncOpenAI, mock: MockServer) -> None:
    mock.configure(ttft_ms=2000, inter_token_ms=10, tokens=3)
    started = time.monotonic()
    stream = await client.chat.completions.create(model="mock-gpt", messages=MESSAGES, stream=True)
    # The SDK returns once the headers are in: the first token is two seconds away still.
    [record] = await asyncio.to_thread(mock.requests)
    assert record["headers_at"] is not None
    assert record["first_token_at"] is None
    first_content_after = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first_content_after = time.monotonic() - started
            break
    await stream.close()

    # Headers go out at once, like OpenAI; the first token only after the TTFT.
    assert first_content_after is not None
    assert first_content_after >= 1.995


async def test_concurrent_streams_throughput_smoke(mock: MockServer) -> None:
    """200 concurrent streams complete intact (a sanity smoke, not a benchmark)."""
    mock.configure(tokens=50)
    body = {"model": "mock-gpt", "messages": MESSAGES, "stream": True}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)

    async def one(http: httpx.AsyncClient) -> int:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            text = "".join([part async for part in response.aiter_text()])
        payloads = sse_payloads(text)
        assert payloads[-1] == "[DONE]"
        return len(payloads) - 3  # role, finish and [DONE] carry no token

    started = time.perf_counter()
    async with httpx.AsyncClient(
        base_url=mock.base_url,
        headers={"authorization": "Bearer sk-test"},
        limits=limits,
        timeout=30,
    ) as http:
        counts = await asyncio.gather(*(one(http) for _ in range(200)))
    elapsed = time.perf_counter() - started

    assert counts == [50] * 200
    print(f"\n200 streams x 50 tokens in {elapsed:.2f}s ({200 * 52 / elapsed:,.0f} chunks/s)")
