"""Fault modes, observed the way a client (the SDK or raw HTTP) would see them."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

from chorus_mock_openai.faults import Fault, FaultRule, FaultSchedule, parse_fault
from chorus_mock_openai.testing import MockServer

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
STREAM = {"model": "mock-gpt", "messages": MESSAGES, "stream": True}


def fault(name: str, **extra: str) -> dict[str, str]:
    """Headers selecting a fault."""
    return {"x-mock-fault": name, **{f"x-mock-{k.replace('_', '-')}": v for k, v in extra.items()}}


async def collect(
    http: httpx.AsyncClient, headers: dict[str, str], into: list[bytes], read_timeout: float = 5
) -> None:
    """Stream a completion into `into`, part by part, so a test sees what came before an error."""
    async with http.stream(
        "POST",
        "/v1/chat/completions",
        json=STREAM,
        headers=headers,
        timeout=httpx.Timeout(5, read=read_timeout),
    ) as response:
        async for part in response.aiter_bytes():
            into.append(part)


async def collect_sdk(stream: AsyncStream[ChatCompletionChunk], into: list[str]) -> None:
    """Iterate an SDK stream into `into`, content delta by content delta."""
    async for chunk in stream:
        into.append(chunk.choices[0].delta.content or "")


async def read_events(response: httpx.Response) -> list[str]:
    """The SSE `data:` payloads read so far, until the stream ends."""
    text = "".join([part async for part in response.aiter_text()])
    return [line[len("data: ") :] for line in text.split("\n\n") if line]


async def test_error_before_start_is_internal_server_error(
    client: AsyncOpenAI, mock: MockServer
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(
            model="mock-gpt", messages=MESSAGES, extra_headers=fault("error_before_start")
        )

    assert caught.value.status_code == 500
    assert caught.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    (record,) = mock.requests()
    assert record["outcome"] == "fault"
    assert record["fault"] == "error_before_start"
    assert record["request_id"] == caught.value.response.headers["x-request-id"]


async def test_rate_limit_is_rate_limit_error(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(
            model="mock-gpt",
            messages=MESSAGES,
            stream=True,
            extra_headers=fault("rate_limit", retry_after="3"),
        )

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.response.headers["retry-after-ms"] == "3000"


async def test_error_mid_stream_raw(http: httpx.AsyncClient, mock: MockServer) -> None:
    async with http.stream(
        "POST", "/v1/chat/completions", json=STREAM, headers=fault("error_mid_stream")
    ) as response:
        events = await read_events(response)

    assert response.status_code == 200
    assert len(events) == 4  # the role chunk, two tokens, the error
    error = orjson.loads(events[-1])
    assert error == {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert "[DONE]" not in events
    (record,) = mock.requests()
    assert record["outcome"] == "fault"
    assert record["tokens_sent"] == 2


async def test_error_mid_stream_raises_in_sdk(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="mock-gpt", messages=MESSAGES, stream=True, extra_headers=fault("error_mid_stream")
    )
    received: list[str] = []
    with pytest.raises(openai.APIError, match="The server had an error"):
        await collect_sdk(stream, received)

    assert "".join(received) == "Chorus mock"


async def test_fault_after_controls_where_the_stream_breaks(
    http: httpx.AsyncClient, mock: MockServer
) -> None:
    async with http.stream(
        "POST",
        "/v1/chat/completions",
        json=STREAM,
        headers=fault("error_mid_stream", fault_after="5"),
    ) as response:
        events = await read_events(response)

    assert len(events) == 1 + 5 + 1
    assert mock.requests()[0]["tokens_sent"] == 5


async def test_drop_leaves_an_incomplete_chunked_body(
    http: httpx.AsyncClient, mock: MockServer
) -> None:
    parts: list[bytes] = []
    with pytest.raises(httpx.RemoteProtocolError):
        await collect(http, fault("drop"), parts)
    received = b"".join(parts)

    assert b"[DONE]" not in received
    assert received.count(b'"content":') == 3  # the role chunk and two tokens
    (record,) = mock.settled()
    assert record["outcome"] == "fault"
    assert record["tokens_sent"] == 2


async def test_drop_is_a_connection_error_in_sdk(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="mock-gpt", messages=MESSAGES, stream=True, extra_headers=fault("drop")
    )
    with pytest.raises(openai.APIConnectionError):
        await collect_sdk(stream, [])


async def test_drop_non_streamed_cuts_the_body(http: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(
            "/v1/chat/completions",
            json={"model": "mock-gpt", "messages": MESSAGES},
            headers=fault("drop"),
        )


async def test_hang_sends_nothing_until_the_client_gives_up(
    http: httpx.AsyncClient, mock: MockServer
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await http.post(
            "/v1/chat/completions",
            json=STREAM,
            headers=fault("hang"),
            timeout=httpx.Timeout(5, read=0.2),
        )

    (record,) = mock.settled()
    assert record["outcome"] == "client_disconnected"
    assert record["fault"] == "hang"
    assert record["headers_at"] is None


async def test_hang_mid_stream_keeps_the_connection_open(
    http: httpx.AsyncClient, mock: MockServer
) -> None:
    parts: list[bytes] = []
    with pytest.raises(httpx.ReadTimeout):
        await collect(http, fault("hang_mid_stream"), parts, read_timeout=0.2)
    received = b"".join(parts)

    assert received.count(b'"content":') == 3
    (record,) = mock.settled()
    assert record["outcome"] == "client_disconnected"
    assert record["tokens_sent"] == 2


async def test_missing_usage_streams_no_usage_chunk(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="mock-gpt",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=fault("missing_usage"),
    )
    chunks = [chunk async for chunk in stream]

    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_missing_usage_non_streamed(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="mock-gpt", messages=MESSAGES, extra_headers=fault("missing_usage")
    )

    assert completion.usage is None


async def test_slow_headers_holds_headers_until_first_token(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    async with http.stream(
        "POST", "/v1/chat/completions", json=STREAM, headers=fault("slow_headers", ttft_ms="150")
    ) as response:
        headers_after = time.monotonic() - started
        await response.aread()

    assert headers_after >= 0.145


async def test_queued_rule_applies_to_the_next_n_requests(
    client: AsyncOpenAI, mock: MockServer
) -> None:
    state = mock.configure(fault={"mode": "rate_limit", "count": 2})
    assert state["faults"] == [{"mode": "rate_limit", "remaining": 2, "model": None, "after": None}]

    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="mock-gpt", messages=MESSAGES)
    completion = await client.chat.completions.create(model="mock-gpt", messages=MESSAGES)

    assert completion.choices[0].finish_reason == "stop"
    assert mock.configure()["faults"] == []


async def test_queued_rule_for_one_model(client: AsyncOpenAI, mock: MockServer) -> None:
    mock.configure(fault={"mode": "error_before_start", "model": "mock-gpt-mini"})

    ok = await client.chat.completions.create(model="mock-gpt", messages=MESSAGES)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="mock-gpt-mini", messages=MESSAGES)

    assert ok.choices[0].message.content


async def test_per_request_fault_wins_over_rule_and_keeps_it(
    client: AsyncOpenAI, mock: MockServer
) -> None:
    mock.configure(fault={"mode": "rate_limit", "count": 1})

    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(
            model="mock-gpt", messages=MESSAGES, extra_headers=fault("error_before_start")
        )

    assert mock.configure()["faults"][0]["remaining"] == 1


def test_parse_fault_lists_valid_names() -> None:
    assert parse_fault(" DROP ") is Fault.DROP
    with pytest.raises(ValueError, match="rate_limit"):
        parse_fault("explode")


def test_schedule_consumes_first_match() -> None:
    schedule = FaultSchedule()
    schedule.add(FaultRule(Fault.DROP, remaining=1, model="a"))
    schedule.add(FaultRule(Fault.HANG, remaining=None))

    first = schedule.take("a")
    second = schedule.take("a")

    assert first is not None
    assert first.fault is Fault.DROP
    assert second is not None
    assert second.fault is Fault.HANG
    assert [rule["mode"] for rule in schedule.as_json()] == ["hang"]


@pytest.mark.parametrize(
    "data",
    [
        "drop",
        {"mode": "nope"},
        {"mode": "drop", "count": 0},
        {"mode": "drop", "after": -1},
        {"mode": "drop", "colour": "red"},
    ],
)
def test_rule_rejects_bad_json(data: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages vary by field
        FaultRule.from_json(data)
