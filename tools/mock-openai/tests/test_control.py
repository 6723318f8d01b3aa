"""The `/_mock` control API: runtime config, fault rules, reset and the request log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from chorus_mock_openai import completion_text
from chorus_mock_openai.testing import MockServer

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]


async def test_get_config_reports_defaults(http: httpx.AsyncClient) -> None:
    response = await http.get("/_mock/config")

    assert response.status_code == 200
    state = response.json()
    assert state["faults"] == []
    assert state["config"]["models"] == ["mock-gpt", "mock-gpt-mini"]
    assert state["config"]["tokens"] == 16
    assert state["config"]["ttft_ms"] == 0


async def test_config_change_applies_to_later_requests(
    client: AsyncOpenAI, mock: MockServer
) -> None:
    state = mock.configure(tokens=3, ttft_ms=5, models=["other"])

    assert state["config"]["tokens"] == 3
    completion = await client.chat.completions.create(model="other", messages=MESSAGES)
    assert completion.choices[0].message.content == completion_text(3)


@pytest.mark.parametrize(
    "body",
    [
        {"tokens": "many"},
        {"tokens": 1.5},
        {"ttft_ms": -1},
        {"models": []},
        {"colour": "red"},
        {"fault": {"mode": "explode"}},
        {"clear_faults": "yes"},
        {"record_limit": 5},
    ],
)
async def test_invalid_config_changes_nothing(http: httpx.AsyncClient, body: Any) -> None:
    response = await http.post("/_mock/config", json={"inter_token_ms": 7, **body})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    state = (await http.get("/_mock/config")).json()
    assert state["config"]["inter_token_ms"] == 0
    assert state["faults"] == []


async def test_control_body_must_be_a_json_object(http: httpx.AsyncClient) -> None:
    not_json = await http.post("/_mock/config", content=b"{")
    not_object = await http.post("/_mock/config", json=[1])

    assert not_json.status_code == not_object.status_code == 400


async def test_fault_rules_queue_and_clear(http: httpx.AsyncClient, mock: MockServer) -> None:
    mock.configure(fault=[{"mode": "drop", "count": 1}, {"mode": "hang", "model": "mock-gpt"}])
    state = mock.configure(fault={"mode": "rate_limit", "after": 3}, clear_faults=True)

    assert state["faults"] == [{"mode": "rate_limit", "remaining": None, "model": None, "after": 3}]


async def test_reset_restores_everything(client: AsyncOpenAI, mock: MockServer) -> None:
    mock.configure(tokens=2, fault={"mode": "missing_usage"})
    await client.chat.completions.create(model="mock-gpt", messages=MESSAGES)

    mock.reset()

    state = mock.configure()
    assert state["config"]["tokens"] == 16
    assert state["faults"] == []
    assert mock.requests() == []


async def test_request_log_filters(client: AsyncOpenAI, mock: MockServer) -> None:
    for tag, model in [("a", "mock-gpt"), ("b", "mock-gpt-mini"), ("a", "mock-gpt-mini")]:
        await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"[mock tag={tag}]"}]
        )

    assert [r["model"] for r in mock.requests(tag="a")] == ["mock-gpt", "mock-gpt-mini"]
    assert [r["tag"] for r in mock.requests(model="mock-gpt-mini")] == ["b", "a"]
    assert [r["tag"] for r in mock.requests(limit=2)] == ["b", "a"]
    first = mock.requests()[0]["request_id"]
    assert [r["request_id"] for r in mock.requests(request_id=first)] == [first]
    assert mock.requests(limit=0) == []


async def test_bad_log_query(http: httpx.AsyncClient) -> None:
    response = await http.get("/_mock/requests", params={"limit": "lots"})

    assert response.status_code == 400


async def test_wait_ms_returns_when_nothing_matches(http: httpx.AsyncClient) -> None:
    response = await http.get("/_mock/requests", params={"tag": "never", "wait_ms": 50})

    assert response.json() == {"object": "list", "data": []}


async def test_delete_request_log(http: httpx.AsyncClient, client: AsyncOpenAI) -> None:
    await client.chat.completions.create(model="mock-gpt", messages=MESSAGES)

    response = await http.delete("/_mock/requests")

    assert response.json() == {"deleted": 1}
    assert (await http.get("/_mock/requests")).json()["data"] == []
