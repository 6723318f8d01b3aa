"""Validation of chat completion request bodies, with OpenAI's error messages.

Only what changes the response is checked (model, messages, stream flags,
token limits, n); other parameters such as temperature or tools are accepted
and ignored, as a proxy forwarding them must not trip the mock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from chorus_mock_openai.errors import OpenAIError, invalid_request
from chorus_mock_openai.tokens import count_prompt_tokens

__all__ = ["ChatRequest", "parse_chat_request"]

_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_ROLES_WITH_OPTIONAL_CONTENT = frozenset({"assistant", "function"})

_UNPARSEABLE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The parts of a valid chat completion request that shape the response."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    """The tighter of `max_tokens` and `max_completion_tokens`, if either is set."""
    last_user_text: str
    prompt_tokens: int


def parse_chat_request(body: bytes) -> ChatRequest:
    """Parse and validate a `POST /v1/chat/completions` body, raising OpenAIError (400)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_request(_UNPARSEABLE) from None
    if not isinstance(data, dict):
        raise _invalid_type("body", "an object", data)
    model = data.get("model")
    if model is None or model == "":
        raise invalid_request("you must provide a model parameter")
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)
    texts, last_user_text = _parse_messages(data.get("messages"))
    stream = _optional_bool(data, "stream")
    include_usage = _parse_stream_options(data.get("stream_options"), stream=stream)
    limits = [
        limit
        for limit in (
            _optional_limit(data, "max_tokens"),
            _optional_limit(data, "max_completion_tokens"),
        )
        if limit is not None
    ]
    n = data.get("n")
    if n is not None and n != 1:
        raise invalid_request("chorus-mock only supports n=1.", param="n", code="invalid_value")
    return ChatRequest(
        model=model,
        stream=stream,
        include_usage=include_usage,
        max_tokens=min(limits) if limits else None,
        last_user_text=last_user_text,
        prompt_tokens=count_prompt_tokens(texts),
    )


def _parse_messages(messages: object) -> tuple[list[str], str]:
    """Validate `messages`; return each message's text and the last user message's text."""
    if messages is None:
        raise invalid_request(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array", messages)
    if not messages:
        raise invalid_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    texts: list[str] = []
    last_user_text = ""
    for index, message in enumerate(messages):
        role, text = _parse_message(index, message)
        texts.append(text)
        if role == "user":
            last_user_text = text
    return texts, last_user_text


def _parse_message(index: int, message: object) -> tuple[str, str]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _invalid_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise invalid_request(
            f"Missing required parameter: '{where}.role'.",
            param=f"{where}.role",
            code="missing_required_parameter",
        )
    if role not in _ROLES:
        supported = ", ".join(f"'{r}'" for r in _ROLES[:-1]) + f", and '{_ROLES[-1]}'"
        raise invalid_request(
            f"Invalid value: '{role}'. Supported values are: {supported}.",
            param=f"{where}.role",
            code="invalid_value",
        )
    if "content" not in message and role not in _ROLES_WITH_OPTIONAL_CONTENT:
        raise invalid_request(
            f"Missing required parameter: '{where}.content'.",
            param=f"{where}.content",
            code="missing_required_parameter",
        )
    return role, _content_text(where, message.get("content"))


def _content_text(where: str, content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise _invalid_type(f"{where}.content", "one of a string or array of objects", content)


def _optional_bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid_type(name, "a boolean", value)
    return value


def _parse_stream_options(options: object, *, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    if not isinstance(options, dict):
        raise _invalid_type("stream_options", "an object", options)
    include_usage = options.get("include_usage")
    if include_usage is None:
        return False
    if not isinstance(include_usage, bool):
        raise _invalid_type("stream_options.include_usage", "a boolean", include_usage)
    return include_usage


def _optional_limit(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(name, "an integer", value)
    if value < 1:
        raise invalid_request(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    return value


def _invalid_type(param: str, expected: str, value: object) -> OpenAIError:
    return invalid_request(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


_JSON_TYPE_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), "an object")
