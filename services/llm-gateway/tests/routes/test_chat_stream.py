"""``POST /chat/stream``: the playground's text deltas, with the gateway's auth and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from chorus_gateway.transport.sse import TextDeltas
from chorus_mock_openai import completion_text
from chorus_mock_openai.testing import MockServer

from ..support import UsageJobs, settled


async def test_streams_text_deltas_then_done(
    gateway_url: str, auth: dict[str, str], upstream: MockServer, usage_jobs: UsageJobs
) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            f"{gateway_url}/chat/stream",
            json={"content": "hi [mock tag=play]"},
            headers=auth,
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [e async for e in _events(response)]
    assert events[-1] == "[DONE]"
    assert "".join(events[:-1]) == completion_text(16)
    [record] = await settled(upstream, tag="play")
    assert record["model"] == "mock-gpt"  # the playground model is the alias `assistant`
    [job] = await usage_jobs.wait(1)
    assert job["outcome"] == "completed"


async def test_multi_line_deltas_survive_the_framing() -> None:
    scanner = TextDeltas()
    out = scanner.feed(b'data: {"choices":[{"delta":{"content":"a\\nb"}}]}\n\n')
    assert out == b"data: a\ndata: b\n\n"


async def test_errors_before_the_stream_use_chorus_shape(
    gateway_url: str, auth: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        missing = await http.post(f"{gateway_url}/chat/stream", json={"content": ""}, headers=auth)
        anonymous = await http.post(f"{gateway_url}/chat/stream", json={"content": "hi"})
    assert missing.status_code == 400
    assert set(missing.json()["error"]) == {"code", "message"}
    assert anonymous.status_code == 401


async def test_upstream_failure_mid_stream_is_an_error_event(
    gateway_url: str, auth: dict[str, str]
) -> None:
    body = {"content": "[mock fault=error_mid_stream fault_after=2]"}
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{gateway_url}/chat/stream", json=body, headers=auth)
    assert b"event: error\ndata: {" in response.content
    assert response.content.endswith(b"data: [DONE]\n\n")


async def _events(response: httpx.Response) -> AsyncIterator[str]:
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
    for event in buffer.split("\n\n"):
        lines = [line[6:] for line in event.split("\n") if line.startswith("data: ")]
        if lines:
            yield "\n".join(lines)
