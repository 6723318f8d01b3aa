"""The request log's records and bounds."""

from __future__ import annotations

from typing import Any

import httpx

from chorus_mock_openai import count_prompt_tokens
from chorus_mock_openai.recorder import Outcome, Recorder
from chorus_mock_openai.testing import MockServer

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]


async def test_completed_stream_record(http: httpx.AsyncClient, mock: MockServer) -> None:
    body = {
        "model": "mock-gpt-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 5,
    }
    headers = {"x-mock-ttft-ms": "20", "x-mock-tag": "rec", "x-client-request-id": "client-1"}
    response = await http.post("/v1/chat/completions", json=body, headers=headers)

    (record,) = mock.settled(tag="rec")
    assert record["request_id"] == response.headers["x-request-id"]
    assert record["client_request_id"] == "client-1"
    assert record["model"] == "mock-gpt-mini"
    assert record["stream"] is True
    assert record["include_usage"] is True
    assert record["usage_sent"] is True
    assert record["fault"] is None
    assert record["status"] == 200
    assert record["ttft_ms"] == 20
    assert record["tokens_planned"] == record["tokens_sent"] == 5
    assert record["prompt_tokens"] == count_prompt_tokens(["hello"])
    assert record["finish_reason"] == "length"
    assert record["outcome"] == "completed"
    assert record["disconnected_at"] is None
    assert (
        record["started_at"]
        <= record["headers_at"]
        <= record["first_token_at"]
        <= record["ended_at"]
    )
    assert record["first_token_monotonic"] - record["started_monotonic"] >= 0.019


async def test_rejected_requests_are_recorded(http: httpx.AsyncClient, mock: MockServer) -> None:
    await http.post("/v1/chat/completions", json={"model": "gpt-x", "messages": MESSAGES})

    (record,) = mock.requests()
    assert record["outcome"] == "rejected"
    assert record["status"] == 404
    assert record["model"] == "gpt-x"
    assert "does not exist" in record["error"]


def test_log_keeps_only_the_most_recent() -> None:
    recorder = Recorder(limit=3)
    for index in range(5):
        recorder.start(f"req_{index}").end(Outcome.COMPLETED)

    assert [r.request_id for r in recorder.query()] == ["req_2", "req_3", "req_4"]
    assert len(recorder) == 3
