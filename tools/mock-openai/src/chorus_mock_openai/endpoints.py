"""`POST /v1/embeddings`, `/v1/responses` (streamed or not) and `/v1/completions` (legacy).

Each answers in OpenAI's exact wire format — the `openai` SDK parses every body and event
into its own types (`CreateEmbeddingResponse`, `Response` and the `response.*` stream
events, `Completion`) — with deterministic content: the completion text is the same
`MOCK_TEXT` words as chat completions, an embedding is derived from its input's hash
(floats, or base64 of little-endian float32 as the SDK asks by default). Usage counts
prompt tokens as the chat endpoint does (one per 4 characters, rounded up, per text)
without chat's per-message framing. Every request is recorded like a chat completion;
the chat endpoint's latency directives and faults are not applied here.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import time
from typing import Any

import orjson

from chorus_mock_openai.asgi import Receive, Scope, Send, read_body, send_json
from chorus_mock_openai.auth import has_bearer_token
from chorus_mock_openai.errors import (
    OpenAIError,
    invalid_request,
    missing_api_key,
    model_not_found,
)
from chorus_mock_openai.recorder import Outcome, RequestRecord, new_request_id
from chorus_mock_openai.state import MockState
from chorus_mock_openai.tokens import completion_text, token_text

__all__ = ["Completions", "Embeddings", "Responses"]

_SSE = [(b"content-type", b"text/event-stream; charset=utf-8")]
_DEFAULT_DIMENSIONS = 16
#: The legacy endpoint's default `max_tokens`, as OpenAI documents it.
_LEGACY_DEFAULT_MAX_TOKENS = 16
_FINGERPRINT = "fp_chorus_mock"


def count_text_tokens(value: object) -> int:
    """Tokens of a prompt or input: ⌈characters/4⌉ per string, one per token id."""
    if isinstance(value, str):
        return -(-len(value) // 4)
    if isinstance(value, int) and not isinstance(value, bool):
        return 1
    if isinstance(value, list):
        return sum(count_text_tokens(item) for item in value)
    if isinstance(value, dict):
        return sum(count_text_tokens(v) for k, v in value.items() if k in ("text", "content"))
    return 0


class _Endpoint:
    """Auth, body, model check and the request's record, as the chat endpoint does them."""

    def __init__(self, state: MockState) -> None:
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = self._state.recorder.start(new_request_id())
        try:
            authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if self._state.config.require_auth and not has_bearer_token(authorization):
                raise missing_api_key()
            raw = await read_body(receive)
            if raw is None:
                record.client_disconnected(time.time(), time.monotonic())
                return
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise invalid_request("We could not parse the JSON body of your request.") from None
            if not isinstance(body, dict):
                raise invalid_request("The request body must be a JSON object.")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise invalid_request("You must provide a model parameter.", param="model")
            record.model = model
            record.stream = body.get("stream") is True
            if not self._state.config.accepts_model(model):
                raise model_not_found(model)
            await self.serve(body, record, send)
        except OpenAIError as error:
            record.mark_headers(error.status)
            record.end(Outcome.REJECTED, error.message)
            await error.send(send)
        finally:
            self._state.recorder.settled()

    async def serve(self, body: dict[str, Any], record: RequestRecord, send: Send) -> None:
        """Answer a checked request for a served model."""
        raise NotImplementedError


def _max_tokens(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_request(f"Invalid '{name}': expected an integer >= 1.", param=name)
    return value


def _vector(text: str, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    values = []
    for i in range(dimensions):
        block = hashlib.sha256(seed + i.to_bytes(4, "little")).digest()
        values.append(int.from_bytes(block[:4], "little") / 2**32 * 2 - 1)
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


class Embeddings(_Endpoint):
    """`POST /v1/embeddings`: one vector per input."""

    async def serve(self, body: dict[str, Any], record: RequestRecord, send: Send) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and all(isinstance(i, int) for i in inputs)
        ):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise invalid_request("'input' must be a string or a non-empty array.", param="input")
        dimensions = _max_tokens(body, "dimensions", _DEFAULT_DIMENSIONS)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise invalid_request(
                "'encoding_format' must be float or base64.", param="encoding_format"
            )
        data = []
        for index, item in enumerate(inputs):
            vector = _vector(orjson.dumps(item).decode(), dimensions)
            embedding: object = vector
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = count_text_tokens(inputs)
        record.prompt_tokens = tokens
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        record.mark_headers(200)
        await send_json(send, 200, orjson.dumps(payload))
        record.usage_sent = True
        record.end(Outcome.COMPLETED)


class Completions(_Endpoint):
    """`POST /v1/completions` (legacy): a `text_completion`, streamed or not."""

    async def serve(self, body: dict[str, Any], record: RequestRecord, send: Send) -> None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str | list):
            raise invalid_request("Missing required parameter: 'prompt'.", param="prompt")
        limit = _max_tokens(body, "max_tokens", _LEGACY_DEFAULT_MAX_TOKENS)
        tokens = min(self._state.config.tokens, limit)
        finish = "length" if limit < self._state.config.tokens else "stop"
        prompt_tokens = count_text_tokens(prompt)
        record.prompt_tokens = prompt_tokens
        record.tokens_planned = tokens
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
        }
        head = {
            "id": "cmpl-" + os.urandom(12).hex(),
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": _FINGERPRINT,
        }
        if body.get("stream") is not True:
            choice = {"text": completion_text(tokens), "index": 0, "logprobs": None}
            payload = {**head, "choices": [{**choice, "finish_reason": finish}], "usage": usage}
            record.mark_headers(200)
            await send_json(send, 200, orjson.dumps(payload))
        else:
            options = body.get("stream_options") or {}
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            extra = {"usage": None} if with_usage else {}
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            record.mark_headers(200)
            for index in range(tokens):
                choice = {"text": token_text(index), "index": 0, "logprobs": None}
                chunk = {**head, "choices": [{**choice, "finish_reason": None}], **extra}
                await _event(send, chunk)
                if index == 0:
                    record.mark_first_token()
                record.tokens_sent = index + 1
            last = {"text": "", "index": 0, "logprobs": None, "finish_reason": finish}
            await _event(send, {**head, "choices": [last], **extra})
            if with_usage:
                await _event(send, {**head, "choices": [], "usage": usage})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        record.tokens_sent = tokens
        record.usage_sent = True
        record.finish_reason = finish
        record.end(Outcome.COMPLETED)


async def _event(send: Send, payload: dict[str, object], name: str | None = None) -> None:
    line = b"data: " + orjson.dumps(payload) + b"\n\n"
    if name is not None:
        line = b"event: " + name.encode() + b"\n" + line
    await send({"type": "http.response.body", "body": line, "more_body": True})


class Responses(_Endpoint):
    """`POST /v1/responses`: a `response` with one output message, streamed as OpenAI's
    `response.*` events or whole."""

    async def serve(self, body: dict[str, Any], record: RequestRecord, send: Send) -> None:
        given = body.get("input")
        if not isinstance(given, str | list):
            raise invalid_request("Missing required parameter: 'input'.", param="input")
        limit = body.get("max_output_tokens")
        cap = _max_tokens(body, "max_output_tokens", self._state.config.tokens)
        tokens = min(self._state.config.tokens, cap)
        incomplete = limit is not None and cap < self._state.config.tokens
        input_tokens = count_text_tokens(given) + count_text_tokens(body.get("instructions") or "")
        record.prompt_tokens = input_tokens
        record.tokens_planned = tokens
        text = completion_text(tokens)
        response_id = "resp_" + os.urandom(24).hex()
        item_id = "msg_" + os.urandom(24).hex()
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + tokens,
        }
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        message = {
            "type": "message",
            "id": item_id,
            "status": "incomplete" if incomplete else "completed",
            "role": "assistant",
            "content": [part],
        }

        def response(status: str, output: list[object], used: object) -> dict[str, object]:
            return {
                "id": response_id,
                "object": "response",
                "created_at": int(time.time()),
                "status": status,
                "background": False,
                "error": None,
                "incomplete_details": {"reason": "max_output_tokens"}
                if status == "incomplete"
                else None,
                "instructions": body.get("instructions"),
                "max_output_tokens": limit,
                "model": body["model"],
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None},
                "store": True,
                "temperature": 1.0,
                "text": {"format": {"type": "text"}},
                "tool_choice": "auto",
                "tools": [],
                "top_p": 1.0,
                "truncation": "disabled",
                "usage": used,
                "user": None,
                "metadata": {},
            }

        final = "incomplete" if incomplete else "completed"
        if body.get("stream") is not True:
            record.mark_headers(200)
            await send_json(send, 200, orjson.dumps(response(final, [message], usage)))
        else:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            record.mark_headers(200)
            sequence = iter(range(1_000_000))
            where = {"item_id": item_id, "output_index": 0, "content_index": 0}

            async def emit(kind: str, **fields: object) -> None:
                await _event(
                    send, {"type": kind, "sequence_number": next(sequence), **fields}, kind
                )

            await emit("response.created", response=response("in_progress", [], None))
            await emit("response.in_progress", response=response("in_progress", [], None))
            started = {**message, "status": "in_progress", "content": []}
            await emit("response.output_item.added", output_index=0, item=started)
            empty = {**part, "text": "", "logprobs": []}
            await emit("response.content_part.added", **where, part=empty)
            for index in range(tokens):
                await emit(
                    "response.output_text.delta", **where, delta=token_text(index), logprobs=[]
                )
                if index == 0:
                    record.mark_first_token()
                record.tokens_sent = index + 1
            await emit("response.output_text.done", **where, text=text, logprobs=[])
            await emit("response.content_part.done", **where, part=part)
            await emit("response.output_item.done", output_index=0, item=message)
            await emit(f"response.{final}", response=response(final, [message], usage))
            await send({"type": "http.response.body", "body": b""})
        record.tokens_sent = tokens
        record.usage_sent = True
        record.finish_reason = "length" if incomplete else "stop"
        record.end(Outcome.COMPLETED)
