"""Request validation answers like OpenAI: 400 `invalid_request_error` with its messages."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from chorus_mock_openai.errors import OpenAIError
from chorus_mock_openai.validation import parse_chat_request

USER = {"role": "user", "content": "hi"}


async def post_raw(http: httpx.AsyncClient, content: bytes) -> httpx.Response:
    """POST raw bytes to the chat completions endpoint."""
    return await http.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )


async def test_malformed_json(http: httpx.AsyncClient) -> None:
    response = await post_raw(http, b'{"model": "mock-gpt", "messages": [')

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("We could not parse the JSON body of your request.")
    assert error["param"] is None
    assert error["code"] is None


@pytest.mark.parametrize(
    ("body", "message", "param", "code"),
    [
        ({"messages": [USER]}, "you must provide a model parameter", None, None),
        (
            {"model": "mock-gpt"},
            "Missing required parameter: 'messages'.",
            "messages",
            "missing_required_parameter",
        ),
        (
            {"model": "mock-gpt", "messages": "hi"},
            "Invalid type for 'messages': expected an array, but got a string instead.",
            "messages",
            "invalid_type",
        ),
        (
            {"model": "mock-gpt", "messages": []},
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        ),
        (
            {"model": 7, "messages": [USER]},
            "Invalid type for 'model': expected a string, but got an integer instead.",
            "model",
            "invalid_type",
        ),
        (
            {"model": "mock-gpt", "messages": [{"role": "robot", "content": "x"}]},
            "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', "
            "'function', 'tool', and 'developer'.",
            "messages[0].role",
            "invalid_value",
        ),
        (
            {"model": "mock-gpt", "messages": [{"role": "user"}]},
            "Missing required parameter: 'messages[0].content'.",
            "messages[0].content",
            "missing_required_parameter",
        ),
        (
            {"model": "mock-gpt", "messages": [{"role": "user", "content": 3}]},
            "Invalid type for 'messages[0].content': expected one of a string or array of "
            "objects, but got an integer instead.",
            "messages[0].content",
            "invalid_type",
        ),
        (
            {"model": "mock-gpt", "messages": [USER], "stream": "yes"},
            "Invalid type for 'stream': expected a boolean, but got a string instead.",
            "stream",
            "invalid_type",
        ),
        (
            {"model": "mock-gpt", "messages": [USER], "max_tokens": 0},
            "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, "
            "but got 0 instead.",
            "max_tokens",
            "integer_below_min_value",
        ),
        (
            {"model": "mock-gpt", "messages": [USER], "stream_options": {"include_usage": True}},
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            None,
        ),
    ],
)
async def test_invalid_bodies(
    http: httpx.AsyncClient, body: dict[str, Any], message: str, param: str | None, code: str | None
) -> None:
    response = await http.post("/v1/chat/completions", json=body)

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


async def test_sdk_sees_bad_request(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="mock-gpt", messages=[])


def test_unrelated_parameters_are_accepted() -> None:
    request = parse_chat_request(
        b'{"model": "m", "messages": [{"role": "system", "content": "be brief"},'
        b'{"role": "assistant", "content": null, "tool_calls": []},'
        b'{"role": "user", "content": "hi"}],'
        b'"temperature": 0.2, "tools": [], "user": "u1", "n": 1,'
        b'"max_tokens": 9, "max_completion_tokens": 4}'
    )

    assert request.model == "m"
    assert request.max_tokens == 4
    assert request.last_user_text == "hi"
    assert not request.stream


def test_n_other_than_one_is_refused() -> None:
    with pytest.raises(OpenAIError, match="n=1"):
        parse_chat_request(b'{"model": "m", "messages": [{"role": "user", "content": ""}], "n": 2}')
