"""The pre-encoded frames equal what encoding each chunk from scratch would give."""

from __future__ import annotations

import orjson

from chorus_mock_openai.completions import (
    ChunkFrames,
    Usage,
    completion_body,
    new_completion_id,
)
from chorus_mock_openai.errors import server_error
from chorus_mock_openai.tokens import encoded_token


def frames(include_usage: bool) -> ChunkFrames:
    """Frames for a fixed completion."""
    return ChunkFrames(
        completion_id="chatcmpl-1",
        created=42,
        model="m",
        system_fingerprint="fp_x",
        include_usage=include_usage,
    )


def decode(frame: bytes) -> object:
    """The JSON payload of one SSE frame."""
    assert frame.startswith(b"data: ")
    assert frame.endswith(b"\n\n")
    return orjson.loads(frame[len(b"data: ") : -2])


HEAD = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 42,
    "model": "m",
    "service_tier": "default",
    "system_fingerprint": "fp_x",
}


def test_spliced_content_chunk_is_valid_json() -> None:
    chunk = decode(frames(include_usage=True).content(encoded_token(1)))

    assert chunk == {
        **HEAD,
        "choices": [
            {"index": 0, "delta": {"content": " mock"}, "logprobs": None, "finish_reason": None}
        ],
        "usage": None,
    }


def test_chunks_without_include_usage_have_no_usage_key() -> None:
    encoder = frames(include_usage=False)

    for frame in (encoder.role(), encoder.content(encoded_token(0)), encoder.finish("stop")):
        chunk = decode(frame)
        assert isinstance(chunk, dict)
        assert "usage" not in chunk


def test_usage_chunk() -> None:
    chunk = decode(frames(include_usage=True).usage(Usage(prompt_tokens=7, completion_tokens=2)))

    assert isinstance(chunk, dict)
    assert chunk["choices"] == []
    assert chunk["usage"]["total_tokens"] == 9


def test_error_event() -> None:
    assert decode(ChunkFrames.error(server_error())) == {"error": server_error().payload()}


def test_completion_body_without_usage() -> None:
    body = orjson.loads(
        completion_body(
            completion_id="chatcmpl-1",
            created=1,
            model="m",
            system_fingerprint="fp",
            content="hi",
            finish_reason="stop",
            usage=None,
        )
    )

    assert "usage" not in body
    assert body["choices"][0]["message"]["content"] == "hi"


def test_completion_ids_are_unique() -> None:
    ids = {new_completion_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(i.startswith("chatcmpl-") for i in ids)
