"""Reading an upstream SSE stream of ``chat.completion.chunk`` events, minimally.

The relay hands every network read to a scanner, which cuts it at the last complete
event (``\\n\\n``) and returns the bytes the client gets. Almost every read takes the fast
path: three substring searches (is a non-null ``"usage"``, an ``"error"`` or ``[DONE]``
in it?) and the bytes go out as they came — no JSON parsing, no re-encoding. Only a read
holding one of those is split into events and the relevant ones parsed. Quotes inside
JSON strings are always escaped, so ``"usage"`` / ``"error"`` cannot match inside
content; a false positive (content that is exactly the word ``error``) only costs a parse.

Two scanners:

- :class:`OpenAIPassThrough` (``/v1``): forwards events unchanged, except that when the
  client did not ask for ``include_usage`` the usage chunk is dropped and the
  ``"usage":null`` the provider then adds to every chunk is removed — the client gets
  exactly what it would have got from the provider directly. An error event is the one
  exception: the provider's words stay with us (the relay logs them) and the client gets
  the gateway's ``upstream_error`` event in its place.
- :class:`ResponsesPassThrough` (``/v1/responses``): forwards OpenAI's ``response.*``
  events unchanged; usage is read from ``response.completed`` (or ``.incomplete`` /
  ``.failed``), which also ends the stream — the Responses API sends no ``[DONE]``.
- :class:`TextDeltas` (``/chat/stream``): turns each chunk into ``data: <text>`` lines.

Both remember what was delivered, so a stream that ends without usage (cut off, dropped,
or a server that ignores ``include_usage``) can be estimated (``token_estimate``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from chorus_gateway.domain.errors import GatewayError, bad_gateway

__all__ = [
    "DONE",
    "KEEPALIVE",
    "OpenAIPassThrough",
    "ResponsesPassThrough",
    "StreamScanner",
    "TextDeltas",
]

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"

_USAGE = b'"usage"'
_NULL_USAGE = b'"usage":null'
_NULL_USAGE_FIELD = b',"usage":null'
_ERROR = b'"error"'
_DONE_MARK = b"[DONE]"
#: What a client is told of a provider's error event (the event itself is logged).
_STREAM_ERROR = bad_gateway("The provider failed while answering; the answer is incomplete.")


def _payload(event: bytes) -> bytes | None:
    """The data of one SSE event (its ``data:`` lines joined), or None for a comment."""
    if event.startswith(b"data: "):
        if b"\n" not in event:
            return event[6:]
    elif not event.startswith(b"data:") and b"\ndata:" not in event:
        return None
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None


def _json_object(payload: bytes) -> dict[str, Any] | None:
    """An event's data as a JSON object, or None if it is not one."""
    if not payload.startswith(b"{"):
        return None
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


class StreamScanner:
    """Cuts upstream bytes into complete events and notes usage, errors and ``[DONE]``."""

    content_type = b"text/event-stream; charset=utf-8"
    #: What ends a stream the gateway has to end itself (after an error, or a provider
    #: that stopped without saying so).
    terminator = DONE

    def __init__(self) -> None:
        self._pending = b""
        self._blocks: list[bytes] = []
        #: True once an event carrying data (not just a comment) arrived.
        self.data_seen = False
        self.done = False
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        #: Data arrived before any error event: the stream had started when it failed.
        self.data_before_error = False

    def feed(self, data: bytes) -> bytes | None:
        """Take one network read; return the client's bytes for its complete events.

        None means nothing is complete yet (or everything complete was dropped).
        """
        if self._pending:
            data = self._pending + data
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return None
        end += 2
        if end < len(data):
            self._pending = data[end:]
            data = data[:end]
        else:
            self._pending = b""
        self._blocks.append(data)
        if not self.data_seen and b"data:" in data:
            self.data_seen = True
        return self._convert(data)

    def _convert(self, block: bytes) -> bytes | None:
        raise NotImplementedError

    def _events(self, block: bytes) -> Iterator[tuple[bytes, bytes | None, dict[str, Any] | None]]:
        """Each event of a block of whole events: ``(event, its data payload, the chunk
        parsed from it)``, noted on the way (a data payload before any error marks
        :attr:`data_before_error`)."""
        for event in block.split(b"\n\n")[:-1]:
            payload = _payload(event)
            chunk = self._note(payload) if payload is not None else None
            if payload is not None and self.error is None:
                self.data_before_error = True
            yield event, payload, chunk

    def _note(self, payload: bytes) -> dict[str, Any] | None:
        """Record what a data payload says; returns the parsed chunk if it was parsed."""
        if payload == _DONE_MARK:
            self.done = True
            return None
        chunk = _json_object(payload)
        if chunk is None:
            return None
        error = chunk.get("error")
        if isinstance(error, dict) and self.error is None:
            self.error = error
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        return chunk

    def delivered(self) -> tuple[int, int]:
        """``(characters, content chunks)`` of the content delivered so far."""
        chars = chunks = 0
        for block in self._blocks:
            for event in block.split(b"\n\n"):
                payload = _payload(event)
                if payload is None or not payload.startswith(b"{"):
                    continue
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    continue
                for text in self._texts(chunk):
                    if text:
                        chars += len(text)
                        chunks += 1
        return chars, chunks

    def _texts(self, chunk: dict[str, Any]) -> list[str]:
        """The generated text of one event (chat's delta content, legacy ``text``)."""
        found = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(content, str):
                found.append(content)
        return found

    def error_event(self, error: GatewayError) -> bytes:
        """How an error after the headers reaches the client."""
        return error.sse_event()

    def error_body(self, error: GatewayError) -> bytes:
        """How an error before the headers reaches the client (the response body)."""
        return error.body()


class OpenAIPassThrough(StreamScanner):
    """OpenAI's SSE to the client, byte for byte (minus the usage it did not ask for)."""

    def __init__(self, *, wants_usage: bool) -> None:
        super().__init__()
        self._wants_usage = wants_usage

    def _convert(self, block: bytes) -> bytes | None:
        usages = block.count(_USAGE)
        special = (
            (usages and usages != block.count(_NULL_USAGE))
            or _ERROR in block
            or _DONE_MARK in block
        )
        if not special:
            if self.error is None:
                self.data_before_error = True
            if not self._wants_usage and usages:
                return block.replace(_NULL_USAGE_FIELD, b"")
            return block
        kept: list[bytes] = []
        for event, _, chunk in self._events(block):
            if not self._wants_usage and chunk is not None and _is_usage_chunk(chunk):
                continue
            if chunk is not None and isinstance(chunk.get("error"), dict):
                kept.append(_STREAM_ERROR.sse_event()[:-2])  # the provider's words stay here
                continue
            kept.append(event)
        if not kept:
            return None
        out = b"\n\n".join(kept) + b"\n\n"
        if not self._wants_usage and usages:
            out = out.replace(_NULL_USAGE_FIELD, b"")
        return out


_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesPassThrough(StreamScanner):
    """OpenAI's Responses stream to the client byte for byte; usage from its last event."""

    terminator = b""

    def _convert(self, block: bytes) -> bytes | None:
        if _USAGE not in block and b'"error"' not in block and b"response.failed" not in block:
            if self.error is None:
                self.data_before_error = True
            return block
        kept: list[bytes] = []
        for event, _, chunk in self._events(block):
            if chunk is not None and chunk.get("type") == "error":
                kept.append(self.error_event(_STREAM_ERROR)[:-2])  # its words stay here
                continue
            kept.append(event)
        return b"\n\n".join(kept) + b"\n\n" if kept else None

    def _note(self, payload: bytes) -> dict[str, Any] | None:
        event = _json_object(payload)
        if event is None:
            return None
        kind = event.get("type")
        if kind == "error" and self.error is None:
            self.error = {"message": event.get("message"), "code": event.get("code")}
        response = event.get("response")
        if kind in _FINAL_EVENTS and isinstance(response, dict):
            self.done = True
            usage = response.get("usage")
            if isinstance(usage, dict):
                self.usage = usage
            if kind == "response.failed" and self.error is None:
                self.error = response.get("error") or {"message": "response failed"}
        return event

    def _texts(self, chunk: dict[str, Any]) -> list[str]:
        delta = chunk.get("delta")
        if chunk.get("type") == "response.output_text.delta" and isinstance(delta, str):
            return [delta]
        return []

    def error_event(self, error: GatewayError) -> bytes:
        """OpenAI's Responses ``error`` event."""
        payload = error.payload()
        event = {
            "type": "error",
            "code": payload.get("code"),
            "message": payload.get("message"),
            "param": payload.get("param"),
            "sequence_number": 0,
        }
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"


def _is_usage_chunk(chunk: dict[str, Any]) -> bool:
    return isinstance(chunk.get("usage"), dict) and not chunk.get("choices")


class TextDeltas(StreamScanner):
    """The playground's format: ``data: <text delta>`` events, then ``data: [DONE]``.

    A delta holding line breaks becomes one event of several ``data:`` lines (SSE joins
    them with ``\\n``), so text survives the framing intact.
    """

    def _convert(self, block: bytes) -> bytes | None:
        out: list[bytes] = []
        for _, payload, chunk in self._events(block):
            if payload is None:
                continue
            if payload == _DONE_MARK:
                out.append(DONE)
                continue
            if chunk is None:
                continue
            if "error" in chunk:
                out.append(_text_error(_STREAM_ERROR.payload()))
                continue
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                text = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(text, str) and text:
                    lines = text.encode().split(b"\n")
                    out.append(b"".join(b"data: " + line + b"\n" for line in lines) + b"\n")
        return b"".join(out) or None

    def error_event(self, error: GatewayError) -> bytes:
        """``event: error`` with the OpenAI error object as data."""
        return _text_error(error.payload())

    def error_body(self, error: GatewayError) -> bytes:
        """Chorus's error shape: ``{"error": {"code", "message"}}`` (this is not /v1)."""
        return error.chorus_body()


def _text_error(payload: object) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"
