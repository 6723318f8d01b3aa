"""Wire encodings of chat completions: `chat.completion` bodies and SSE chunk frames.

Field sets and order follow what api.openai.com sends today. Streaming frames
are pre-encoded per request: orjson encodes a template chunk once with a
placeholder for the content, and each token is then spliced in between the
two halves, so a token costs one bytes concatenation and no JSON encoding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import orjson

from chorus_mock_openai.errors import OpenAIError

__all__ = [
    "DONE",
    "ChunkFrames",
    "Usage",
    "completion_body",
    "new_completion_id",
]

DONE = b"data: [DONE]\n\n"
"""The SSE event that ends every successful stream."""

SERVICE_TIER = "default"

_PLACEHOLDER = "\x1fchorus-mock-content\x1f"
_PLACEHOLDER_JSON = orjson.dumps(_PLACEHOLDER)


def new_completion_id() -> str:
    """A fresh `chatcmpl-…` id."""
    return "chatcmpl-" + os.urandom(15).hex()


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one completion."""

    prompt_tokens: int
    completion_tokens: int

    def as_json(self) -> dict[str, object]:
        """The `usage` object with the detail breakdowns OpenAI includes."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    system_fingerprint: str,
    content: str,
    finish_reason: str,
    usage: Usage | None,
) -> bytes:
    """A non-streamed `chat.completion` response body; `usage` None omits the field."""
    body: dict[str, object] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage.as_json()
    body["service_tier"] = SERVICE_TIER
    body["system_fingerprint"] = system_fingerprint
    return orjson.dumps(body)


class ChunkFrames:
    """The SSE frames of one streamed completion; all chunks share id, created and model.

    When the client asked for `stream_options.include_usage`, every chunk
    carries `"usage": null` and the usage chunk has `"choices": []`.
    """

    __slots__ = ("_content_head", "_content_tail", "_head", "_include_usage")

    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        system_fingerprint: str,
        include_usage: bool,
    ) -> None:
        self._head: dict[str, object] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": SERVICE_TIER,
            "system_fingerprint": system_fingerprint,
        }
        self._include_usage = include_usage
        template = self._frame({"content": _PLACEHOLDER}, None)
        head, tail = template.split(_PLACEHOLDER_JSON)
        self._content_head = head
        self._content_tail = tail

    def role(self) -> bytes:
        """The first chunk: the assistant role with empty content."""
        return self._frame({"role": "assistant", "content": "", "refusal": None}, None)

    def content(self, token_json: bytes) -> bytes:
        """A content delta chunk for a token given as a JSON string literal."""
        return self._content_head + token_json + self._content_tail

    def finish(self, finish_reason: str) -> bytes:
        """The chunk with an empty delta that carries the finish reason."""
        return self._frame({}, finish_reason)

    def usage(self, usage: Usage) -> bytes:
        """The usage chunk sent before [DONE] when `include_usage` was asked."""
        return _sse({**self._head, "choices": [], "usage": usage.as_json()})

    @staticmethod
    def error(error: OpenAIError) -> bytes:
        """An in-stream error event, as OpenAI sends when generation fails mid-way."""
        return _sse({"error": error.payload()})

    def _frame(self, delta: dict[str, object], finish_reason: str | None) -> bytes:
        chunk: dict[str, object] = {
            **self._head,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self._include_usage:
            chunk["usage"] = None
        return _sse(chunk)


def _sse(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
