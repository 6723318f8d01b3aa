"""``POST /v1/chat/completions`` through the gateway, against mock providers.

Each test drives the gateway as a client would — the official SDK or raw HTTP — and
checks what that client, the provider (the mock's request log) and the billing (the
``record_llm_usage`` jobs in arq's queue) observe.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from openai import APIError, AsyncOpenAI, BadRequestError, InternalServerError

from chorus_devstack.ports import free_port
from chorus_gateway.settings import GatewaySettings
from chorus_mock_openai import completion_text
from chorus_mock_openai.testing import MockServer

from ..support import (
    WORKER_KEY,
    UsageJobs,
    hang_up_after,
    provider,
    running_gateway,
    settings_for,
    settled,
    until,
)


def chat(text: str = "hello", **extra: Any) -> dict[str, Any]:
    """A request body."""
    return {"model": "mock-gpt", "messages": [{"role": "user", "content": text}], **extra}


async def sse_events(response: httpx.Response) -> list[bytes]:
    """The data payloads of an SSE response, in order."""
    body = b""
    async for piece in response.aiter_bytes():
        body += piece
    return [e[6:] for e in body.split(b"\n\n") if e.startswith(b"data: ")]


async def stream_chat(
    gateway_url: str, auth: dict[str, str], text: str
) -> tuple[httpx.Response, list[bytes]]:
    """Stream a completion of ``text`` through the gateway over plain HTTP: the response
    (read to its end) and its SSE data payloads."""
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            f"{gateway_url}/v1/chat/completions",
            json=chat(text, stream=True),
            headers=auth,
        ) as response,
    ):
        events = await sse_events(response)
    return response, events


async def collect(sdk: AsyncOpenAI, **request: Any) -> tuple[str, Any, list[Any]]:
    """Stream a completion with the SDK: (text, usage, chunks)."""
    stream = await sdk.chat.completions.create(stream=True, **request)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next((c.usage for c in chunks if c.usage is not None), None)
    return text, usage, chunks


# -- pass-through ---------------------------------------------------------------------------


async def test_sdk_stream_gets_the_same_tokens_and_usage_as_direct(
    client: AsyncOpenAI, direct: AsyncOpenAI, usage_jobs: UsageJobs
) -> None:
    request = chat("Tell me a story", stream_options={"include_usage": True})
    via_gateway = await collect(client, **request)
    straight = await collect(direct, **request)

    assert via_gateway[0] == straight[0] == completion_text(16)
    assert via_gateway[1] is not None
    assert via_gateway[1].model_dump() == straight[1].model_dump()
    assert len(via_gateway[2]) == len(straight[2])
    [job] = await usage_jobs.wait(1)
    assert job["outcome"] == "completed"
    assert job["estimated"] is False
    assert (job["prompt_tokens"], job["completion_tokens"]) == (
        straight[1].prompt_tokens,
        straight[1].completion_tokens,
    )
    assert job["provider"] == "primary"
    assert job["model"] == "mock-gpt"


async def test_non_streamed_completion_is_the_same_as_direct(
    client: AsyncOpenAI, direct: AsyncOpenAI, usage_jobs: UsageJobs
) -> None:
    via_gateway = await client.chat.completions.with_raw_response.create(**chat("Hi there"))
    straight = await direct.chat.completions.create(**chat("Hi there"))
    parsed = via_gateway.parse()

    assert parsed.choices[0].message.content == straight.choices[0].message.content
    assert parsed.usage == straight.usage
    assert via_gateway.headers["x-chorus-provider"] == "primary"
    # The gateway's own share is a part of the time the request spent in the process.
    overhead_ms = float(via_gateway.headers["x-chorus-overhead-ms"])
    assert 0 <= overhead_ms <= float(via_gateway.headers["x-process-time"]) * 1000
    assert via_gateway.headers["x-ratelimit-limit-requests"] == "600"
    [job] = await usage_jobs.wait(1)
    assert job["completion_tokens"] == straight.usage.completion_tokens  # type: ignore[union-attr]


async def test_usage_chunk_is_stripped_when_the_client_did_not_ask(
    gateway_url: str, upstream: MockServer, auth: dict[str, str]
) -> None:
    response, events = await stream_chat(gateway_url, auth, "no usage please [mock tag=strip]")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"

    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert all(c["choices"] for c in chunks)
    [record] = await settled(upstream, tag="strip")
    assert record["include_usage"] is True  # the gateway asked on the client's behalf
    assert record["usage_sent"] is True


async def test_model_alias_is_served_by_its_model(
    client: AsyncOpenAI, upstream: MockServer
) -> None:
    text, _, chunks = await collect(
        client,
        model="assistant",
        messages=[{"role": "user", "content": "hi [mock tag=alias]"}],
    )
    assert text == completion_text(16)
    assert chunks[0].model == "mock-gpt"
    [record] = await settled(upstream, tag="alias")
    assert record["model"] == "mock-gpt"


async def test_users_are_billed_as_themselves(
    client: AsyncOpenAI, user_id: int, usage_jobs: UsageJobs
) -> None:
    # OpenAI's ``user`` field names an end user only for service keys, never for users.
    text, _, _ = await collect(client, **chat(), user=str(user_id + 1))
    assert text == completion_text(16)
    [job] = await usage_jobs.wait(1)
    assert (job["subject"], job["user_id"]) == (f"user:{user_id}", user_id)


async def test_missing_max_tokens_is_capped_at_the_default(
    client: AsyncOpenAI, upstream: MockServer
) -> None:
    await client.chat.completions.create(**chat("cap [mock tag=cap tokens=5000]"))
    await client.chat.completions.create(**chat("mine [mock tag=own]"), max_tokens=3)
    [capped] = await settled(upstream, tag="cap")
    [own] = await settled(upstream, tag="own")
    assert (
        capped["tokens_sent"] == GatewaySettings.model_fields["gateway_default_max_tokens"].default
    )
    assert own["tokens_sent"] == 3


# -- fallback and failures ---------------------------------------------------------------------


async def test_primary_failing_before_start_falls_back(
    client: AsyncOpenAI, upstream: MockServer, backup: MockServer, usage_jobs: UsageJobs
) -> None:
    upstream.configure(fault={"mode": "error_before_start", "count": 1})
    response = await client.chat.completions.with_raw_response.create(
        stream=True, **chat("fallback [mock tag=fb]")
    )
    text = "".join([c.choices[0].delta.content or "" async for c in response.parse() if c.choices])
    assert text == completion_text(16)
    assert response.headers["x-chorus-provider"] == "backup"
    [failed] = await settled(upstream, tag="fb")
    [served] = await settled(backup, tag="fb")
    assert (failed["status"], served["outcome"]) == (500, "completed")
    [job] = await usage_jobs.wait(1)
    assert job["provider"] == "backup"


async def test_primary_rate_limited_falls_back_for_non_streamed_calls(
    client: AsyncOpenAI, upstream: MockServer, backup: MockServer
) -> None:
    upstream.configure(fault={"mode": "rate_limit", "count": 1})
    response = await client.chat.completions.with_raw_response.create(**chat("rl [mock tag=rl]"))
    assert response.parse().choices[0].message.content == completion_text(16)
    assert response.headers["x-chorus-provider"] == "backup"


async def test_error_mid_stream_ends_with_an_error_event_and_no_fallback(
    gateway_url: str,
    upstream: MockServer,
    backup: MockServer,
    usage_jobs: UsageJobs,
    auth: dict[str, str],
) -> None:
    response, events = await stream_chat(
        gateway_url, auth, "[mock fault=error_mid_stream fault_after=3 tag=mid]"
    )
    assert response.status_code == 200

    assert events[-1] == b"[DONE]"
    error = orjson.loads(events[-2])["error"]
    assert error["type"] == "server_error"
    content = [orjson.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2]]
    assert "".join(c or "" for c in content) == completion_text(3)
    assert await asyncio.to_thread(backup.requests, tag="mid") == []
    [job] = await usage_jobs.wait(1)
    assert (job["outcome"], job["estimated"]) == ("error", True)
    assert job["completion_tokens"] >= 3


async def test_sdk_raises_on_an_error_mid_stream(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        stream=True, **chat("[mock fault=error_mid_stream fault_after=2]")
    )
    received: list[Any] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(APIError):
        await consume()
    assert len(received) >= 2


async def test_dropped_upstream_mid_stream_is_an_error_event(
    gateway_url: str, auth: dict[str, str]
) -> None:
    _, events = await stream_chat(gateway_url, auth, "[mock fault=drop fault_after=2]")
    assert events[-1] == b"[DONE]"
    assert orjson.loads(events[-2])["error"]["code"] == "upstream_error"


async def test_hanging_primary_times_out_at_ttft_and_falls_back(
    client: AsyncOpenAI, upstream: MockServer, backup: MockServer
) -> None:
    upstream.configure(fault={"mode": "hang", "count": 1})
    text, _, _ = await collect(client, **chat("[mock tag=hang]"))
    assert text == completion_text(16)
    # A hanging provider never ends a request itself: the gateway gave up on it.
    [abandoned] = await settled(upstream, tag="hang")
    assert abandoned["outcome"] == "client_disconnected"


async def test_every_provider_hanging_is_a_504_not_a_hang(
    gateway_redis: Any, upstream: MockServer
) -> None:
    quick = {"connect": 1.0, "ttft": 0.4, "idle": 0.4, "total": 5.0}
    providers = [
        {
            "name": "only",
            "base_url": upstream.api_base,
            "api_key": "sk",
            "models": ["mock-gpt"],
            "timeouts": quick,
        }
    ]
    upstream.configure(fault={"mode": "hang"})
    settings = settings_for(gateway_redis.url, providers, gateway_max_attempts=2)
    async with running_gateway(settings) as url:
        # A hang would end in the SDK's own timeout (APITimeoutError), not in this 504.
        sdk = AsyncOpenAI(base_url=f"{url}/v1", api_key=WORKER_KEY, max_retries=0, timeout=30)
        async with sdk:
            with pytest.raises(InternalServerError) as raised:
                await sdk.chat.completions.create(stream=True, **chat())
    assert raised.value.status_code == 504
    assert raised.value.body["type"] == "timeout"  # type: ignore[index]
    records = await settled(upstream)
    assert [r["outcome"] for r in records] == ["client_disconnected"] * 2


async def test_idle_stream_is_ended_with_a_timeout_event(
    gateway_url: str, upstream: MockServer, usage_jobs: UsageJobs, auth: dict[str, str]
) -> None:
    _, events = await stream_chat(
        gateway_url, auth, "[mock fault=hang_mid_stream fault_after=2 tag=idle]"
    )
    assert events[-1] == b"[DONE]"
    assert orjson.loads(events[-2])["error"]["type"] == "timeout"
    [record] = await settled(upstream, tag="idle")
    assert record["outcome"] == "client_disconnected"
    [job] = await usage_jobs.wait(1)
    assert job["outcome"] == "error"


async def test_provider_refusing_the_request_is_relayed_without_fallback(
    client: AsyncOpenAI, backup: MockServer
) -> None:
    with pytest.raises(BadRequestError) as raised:
        await client.chat.completions.create(n=2, **chat("[mock tag=n2]"))
    assert raised.value.status_code == 400
    assert await asyncio.to_thread(backup.requests, tag="n2") == []


# -- cancellation ------------------------------------------------------------------------------
#
# A gateway whose providers have long timeouts: nothing but the client's leaving can end
# these upstream requests before the test has its answer, so the mock settling at all is
# the proof that the disconnect reached it. How fast it does is a benchmark figure
# (bench/gateway_llm.py, "disconnect → upstream cancel").

PATIENT = {"connect": 5.0, "ttft": 60.0, "idle": 60.0, "total": 120.0}


@pytest.fixture
async def patient_url(gateway_redis: Any, upstream: MockServer, backup: MockServer) -> Any:
    """A replica on the same mocks whose timeouts outlast every test."""
    providers = {
        "providers": [
            provider("primary", upstream, timeouts=PATIENT),
            provider("backup", backup, priority=1, timeouts=PATIENT),
        ]
    }
    async with running_gateway(settings_for(gateway_redis.url, providers)) as url:
        yield url


async def test_client_disconnect_mid_stream_closes_upstream_and_bills_what_was_sent(
    patient_url: str,
    upstream: MockServer,
    backup: MockServer,
    usage_jobs: UsageJobs,
    auth: dict[str, str],
) -> None:
    # 1000 tokens 10 ms apart: ten seconds of stream, cut after five.
    body = chat("[mock tokens=1000 inter_token_ms=10 tag=cut]", stream=True)
    await hang_up_after(patient_url, body, auth)

    [record] = await settled(upstream, tag="cut")
    assert record["outcome"] == "client_disconnected"
    assert record["tokens_sent"] < 1000  # the provider stopped producing: no token is wasted
    assert await asyncio.to_thread(backup.requests, tag="cut") == []
    [job] = await usage_jobs.wait(1)
    assert (job["outcome"], job["estimated"]) == ("cut_off", True)
    assert job["completion_tokens"] >= 4  # at least what reached the client
    assert job["prompt_tokens"] == record["prompt_tokens"]


async def test_client_disconnect_before_the_first_token_cancels_upstream(
    patient_url: str,
    upstream: MockServer,
    backup: MockServer,
    usage_jobs: UsageJobs,
    auth: dict[str, str],
) -> None:
    body = chat("[mock ttft_ms=60000 tag=early]", stream=True)
    async with httpx.AsyncClient(timeout=10) as http:
        request = asyncio.create_task(
            http.post(f"{patient_url}/v1/chat/completions", json=body, headers=auth)
        )
        await until(lambda: upstream.requests(tag="early") != [])
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    [record] = await settled(upstream, tag="early")
    assert (record["outcome"], record["tokens_sent"]) == ("client_disconnected", 0)
    assert await asyncio.to_thread(backup.requests, tag="early") == []  # no fallback either
    [job] = await usage_jobs.wait(1)
    assert (job["outcome"], job["completion_tokens"]) == ("cut_off", 0)


async def test_client_disconnect_during_a_non_streamed_call_cancels_upstream(
    patient_url: str, upstream: MockServer, backup: MockServer, auth: dict[str, str]
) -> None:
    body = chat("[mock ttft_ms=60000 tag=whole]")
    async with httpx.AsyncClient(timeout=10) as http:
        request = asyncio.create_task(
            http.post(f"{patient_url}/v1/chat/completions", json=body, headers=auth)
        )
        await until(lambda: upstream.requests(tag="whole") != [])
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    [record] = await settled(upstream, tag="whole")
    assert record["outcome"] == "client_disconnected"
    assert await asyncio.to_thread(backup.requests, tag="whole") == []


# -- keep-alive --------------------------------------------------------------------------------


async def test_keepalive_comments_flow_while_waiting_for_the_first_token(
    gateway_redis: Any, providers: dict[str, Any], auth: dict[str, str]
) -> None:
    settings = settings_for(gateway_redis.url, providers, gateway_keepalive_seconds=0.1)
    async with (
        running_gateway(settings) as url,
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json=chat("[mock ttft_ms=600]", stream=True),
            headers=auth,
        ) as response,
    ):
        body = b""
        async for piece in response.aiter_bytes():
            body += piece
    assert response.status_code == 200
    assert body.startswith(b": keep-alive\n\n")
    assert body.count(b": keep-alive") >= 2
    assert body.endswith(b"data: [DONE]\n\n")
    assert b'"content":"Chorus"' in body


# -- what a provider says stays in the gateway's log -------------------------------------

MOCK_500 = "The server had an error while processing your request"


async def test_a_failing_provider_is_told_in_our_words_and_logged(
    gateway_url: str,
    upstream: MockServer,
    backup: MockServer,
    auth: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for mock in (upstream, backup):
        mock.configure(fault={"mode": "error_before_start"})
    async with httpx.AsyncClient(timeout=10) as http:
        streamed = await http.post(
            f"{gateway_url}/v1/chat/completions", json=chat(stream=True), headers=auth
        )
        whole = await http.post(f"{gateway_url}/v1/chat/completions", json=chat(), headers=auth)
    for response in (streamed, whole):
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "upstream_error"
        assert error["message"] == "The provider of `mock-gpt` failed; try again later."
        assert MOCK_500 not in response.text
        assert "HTTP 500" not in response.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"attempt on primary failed (status_5xx): HTTP 500: {MOCK_500}" in logged


async def test_an_unreachable_provider_does_not_show_where_it_is(
    gateway_redis: Any, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    providers = [
        {
            "name": "internal",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "api_key": "sk",
            "models": ["mock-gpt"],
            "timeouts": {"connect": 1.0, "ttft": 1.0, "idle": 1.0, "total": 5.0},
        }
    ]
    settings = settings_for(gateway_redis.url, providers, gateway_max_attempts=1)
    async with running_gateway(settings) as url, httpx.AsyncClient(timeout=10) as http:
        streamed = await http.post(
            f"{url}/v1/chat/completions", json=chat(stream=True), headers=auth
        )
        whole = await http.post(f"{url}/v1/chat/completions", json=chat(), headers=auth)
    for response in (streamed, whole):
        assert response.status_code == 502
        assert str(port) not in response.text
        assert "127.0.0.1" not in response.text
        assert "connect" not in response.text.lower()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "attempt on internal failed (connect)" in logged
    assert str(port) in logged


async def test_a_providers_error_event_mid_stream_is_replaced_by_ours(
    gateway_url: str, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, events = await stream_chat(gateway_url, auth, "[mock fault=error_mid_stream fault_after=2]")
    error = orjson.loads(events[-2])["error"]
    assert error["code"] == "upstream_error"
    assert all(MOCK_500.encode() not in e for e in events)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "primary sent an error event mid-stream" in logged
    assert MOCK_500 in logged
