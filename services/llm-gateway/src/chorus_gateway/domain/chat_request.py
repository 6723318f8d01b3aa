"""A request to an OpenAI endpoint: checked enough to route, limit and bill it, otherwise
opaque. Chat completions, and the same for ``/v1/completions`` (legacy), ``/v1/embeddings``
and ``/v1/responses``: each parser checks its endpoint's prompt field and sets how the body
is adapted upstream (``path``, whether it generates tokens, its cap's field name).

The gateway validates what it relies on — ``model``, ``messages``, ``stream``,
``stream_options``, ``max_tokens``/``max_completion_tokens``, ``n`` — with OpenAI's
messages, and forwards every other field untouched, so parameters a provider adds
(``tools``, ``response_format``, vLLM's ``guided_json``…) pass through.

Upstream, the body differs from the client's in three ways: ``model`` is the provider's
id for it; a stream always asks for ``stream_options.include_usage`` (the gateway needs
the count, and strips the chunk again if the client did not ask); and a request without
a completion cap gets ``GATEWAY_DEFAULT_MAX_TOKENS``, the amount its admission reserved,
so no completion can outrun the tokens/min limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from chorus_common.text import find_unstorable, unstorable
from chorus_gateway.domain.errors import invalid_request
from chorus_gateway.domain.token_estimate import estimate_input_tokens, estimate_prompt_tokens

__all__ = [
    "ChatRequest",
    "parse_chat_request",
    "parse_completions_request",
    "parse_embeddings_request",
    "parse_playground_request",
    "parse_responses_request",
]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MAX_N = 16
#: OpenAI's ``user`` names an end user; it keys their limits, so it stays short.
_MAX_END_USER = 256
#: ``/v1/completions``' default ``max_tokens`` (OpenAI documents 16).
_LEGACY_MAX_TOKENS = 16


@dataclass(slots=True)
class ChatRequest:
    """A parsed ``POST /v1/chat/completions`` body."""

    body: dict[str, Any]
    model: str
    stream: bool
    #: Whether the client asked for the usage chunk (``stream_options.include_usage``).
    wants_usage: bool
    #: The client's completion cap (the smaller of the two fields), if any.
    max_tokens: int | None
    n: int
    prompt_estimate: int
    #: OpenAI's ``user`` field: the end user a service calls for (billing, not identity).
    end_user: str | None = None
    #: The provider's endpoint, under its base URL.
    path: str = "/chat/completions"
    #: False for embeddings: no completion tokens, no cap sent.
    generates: bool = True
    #: Whether a stream asks for ``stream_options.include_usage`` (responses always report).
    usage_option: bool = True
    #: The cap's field for this endpoint (None: the provider's ``max_tokens_field``).
    max_field: str | None = None
    _encoded: dict[tuple[str, str, int], bytes] = field(default_factory=dict, repr=False)

    def completion_cap(self, default: int) -> int:
        """Completion tokens reserved per choice."""
        if not self.generates:
            return 0
        return self.max_tokens if self.max_tokens is not None else default

    def reservation(self, default_max_tokens: int) -> int:
        """Tokens reserved at admission: prompt estimate + every choice's cap."""
        return self.prompt_estimate + self.n * self.completion_cap(default_max_tokens)

    def upstream_body(self, upstream_model: str, max_tokens_field: str, default: int) -> bytes:
        """The JSON body for one provider (cached: retries to it reuse the bytes)."""
        key = (upstream_model, max_tokens_field, default)
        cached = self._encoded.get(key)
        if cached is not None:
            return cached
        body = dict(self.body)
        body["model"] = upstream_model
        if self.stream and self.usage_option:
            options = body.get("stream_options") or {}
            body["stream_options"] = {**options, "include_usage": True}
        if self.generates and self.max_tokens is None:
            body[self.max_field or max_tokens_field] = default
        encoded = orjson.dumps(body)
        self._encoded[key] = encoded
        return encoded


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_request(f"Invalid '{name}': expected an integer >= 1.", param=name)
    return value


def _check_messages(messages: Any) -> list[Any]:
    if not isinstance(messages, list):
        raise invalid_request("Missing required parameter: 'messages'.", param="messages")
    if not messages:
        raise invalid_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
        )
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid_request(f"Invalid type for '{where}': expected an object.", param=where)
        role = message.get("role")
        if role not in _ROLES:
            raise invalid_request(
                f"Invalid value for '{where}.role': expected one of {sorted(_ROLES)}.",
                param=f"{where}.role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise invalid_request(
                f"Invalid type for '{where}.content': expected a string or an array.",
                param=f"{where}.content",
            )
        bad = find_unstorable(message)
        if bad is not None:
            raise invalid_request(
                f"Invalid value for '{where}.{bad[0]}': it {bad[1]}.", param=f"{where}.{bad[0]}"
            )
    return messages


def _text(body: dict[str, Any], name: str, *, limit: int) -> str | None:
    """An optional string field: one no store could hold, or too long, is a 400."""
    value = body.get(name)
    if not isinstance(value, str):
        return None
    reason = unstorable(value)
    if reason is not None:
        raise invalid_request(f"Invalid value for '{name}': it {reason}.", param=name)
    if len(value) > limit:
        raise invalid_request(
            f"Invalid '{name}': string too long. Expected at most {limit} characters.",
            param=name,
        )
    return value


def _load(raw: bytes) -> tuple[dict[str, Any], str]:
    """The JSON object of a body and its ``model``; OpenAI's 400s otherwise."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("You must provide a model parameter.", param="model")
    _text(body, "model", limit=256)
    return body, model


def _stream_flag(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise invalid_request("Invalid type for 'stream': expected a boolean.", param="stream")
    return stream


def _input(body: dict[str, Any], name: str) -> Any:
    """A prompt/input field: a string or an array, storable."""
    value = body.get(name)
    if not isinstance(value, str | list) or not value:
        raise invalid_request(f"Missing required parameter: '{name}'.", param=name)
    bad = find_unstorable({name: value})
    if bad is not None:
        raise invalid_request(f"Invalid value for '{bad[0]}': it {bad[1]}.", param=name)
    return value


def parse_completions_request(raw: bytes) -> ChatRequest:
    """``POST /v1/completions`` (legacy): ``prompt``, ``max_tokens`` (16 if unset, as
    OpenAI's default), ``n``, ``stream``; usage as chat completions have it."""
    return _parse_chat_like(raw, messages_field=None)


def parse_embeddings_request(raw: bytes) -> ChatRequest:
    """``POST /v1/embeddings``: ``input`` (text, texts or token ids); never streamed."""
    body, model = _load(raw)
    given = _input(body, "input")
    return ChatRequest(
        body=body,
        model=model,
        stream=False,
        wants_usage=False,
        max_tokens=None,
        n=1,
        prompt_estimate=estimate_input_tokens(given),
        end_user=_text(body, "user", limit=_MAX_END_USER) or None,
        path="/embeddings",
        generates=False,
        usage_option=False,
    )


def parse_responses_request(raw: bytes) -> ChatRequest:
    """``POST /v1/responses``: ``input`` (+ ``instructions``), ``max_output_tokens``,
    ``stream``; the provider reports usage in ``response.completed``."""
    body, model = _load(raw)
    given = _input(body, "input")
    instructions = _text(body, "instructions", limit=10_000_000) or ""
    return ChatRequest(
        body=body,
        model=model,
        stream=_stream_flag(body),
        wants_usage=True,
        max_tokens=_positive_int(body, "max_output_tokens"),
        n=1,
        prompt_estimate=estimate_input_tokens(given) + estimate_input_tokens(instructions),
        end_user=_text(body, "user", limit=_MAX_END_USER) or None,
        path="/responses",
        usage_option=False,
        max_field="max_output_tokens",
    )


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Parse and check a body; :class:`GatewayError` (400) with OpenAI's wording if invalid."""
    return _parse_chat_like(raw, messages_field="messages")


def _parse_chat_like(raw: bytes, *, messages_field: str | None) -> ChatRequest:
    body, model = _load(raw)
    if messages_field is not None:
        prompt_estimate = estimate_prompt_tokens(_check_messages(body.get(messages_field)))
    else:
        prompt_estimate = estimate_input_tokens(_input(body, "prompt"))
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid_request("Invalid type for 'stream': expected a boolean.", param="stream")
    options = body.get("stream_options")
    wants_usage = False
    if options is not None:
        if not stream:
            raise invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if not isinstance(options, dict):
            raise invalid_request(
                "Invalid type for 'stream_options': expected an object.", param="stream_options"
            )
        wants_usage = options.get("include_usage") is True
    caps = [
        cap
        for cap in (_positive_int(body, "max_tokens"), _positive_int(body, "max_completion_tokens"))
        if cap is not None
    ]
    n = _positive_int(body, "n") or 1
    if n > _MAX_N:
        raise invalid_request(f"Invalid 'n': at most {_MAX_N}.", param="n")
    if messages_field is None and not caps:
        # The legacy endpoint's own default, said out loud to the provider: reserved and
        # produced alike, whatever a provider's own default would be.
        caps = [_LEGACY_MAX_TOKENS]
        body["max_tokens"] = _LEGACY_MAX_TOKENS
    return ChatRequest(
        body=body,
        model=model,
        stream=stream,
        wants_usage=wants_usage,
        max_tokens=min(caps) if caps else None,
        n=n,
        prompt_estimate=prompt_estimate,
        end_user=_text(body, "user", limit=_MAX_END_USER) or None,
        path="/chat/completions" if messages_field is not None else "/completions",
        max_field=None if messages_field is not None else "max_tokens",
    )


def parse_playground_request(raw: bytes, *, default_model: str) -> ChatRequest:
    """``POST /chat/stream``'s ``{"content", "model"?, "max_tokens"?}`` as a streamed chat."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request('The body must be JSON: {"content": "…"}.') from None
    if not isinstance(body, dict):
        raise invalid_request('The body must be a JSON object: {"content": "…"}.')
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        raise invalid_request("'content' must be a non-empty string.", param="content")
    _text(body, "content", limit=len(content))
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise invalid_request("'model' must be a non-empty string.", param="model")
    _text(body, "model", limit=256)
    max_tokens = _positive_int(body, "max_tokens")
    messages = [{"role": "user", "content": content}]
    upstream: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if max_tokens is not None:
        upstream["max_tokens"] = max_tokens
    return ChatRequest(
        body=upstream,
        model=model,
        stream=True,
        wants_usage=False,
        max_tokens=max_tokens,
        n=1,
        prompt_estimate=estimate_prompt_tokens(messages),
    )
