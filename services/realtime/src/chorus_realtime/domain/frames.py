"""Frames: what the server writes (events, control frames) and what clients may send.

An event is written exactly as Redis delivered it: :meth:`OutFrame.event` parses the
envelope once per replica (for its id and timestamp) and the resulting frame — text, the
ASGI message dict and the SSE bytes — is shared by every connection that receives it, so
the per-socket cost is a reference in a queue and a write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from chorus_common.events import InvalidStreamIdError, parse_stream_id, utc_timestamp
from chorus_common.rooms import ACCESS_EVENT_TYPES
from chorus_common.text import unstorable

__all__ = [
    "ClientFrame",
    "FrameError",
    "OutFrame",
    "Ping",
    "SendMessage",
    "Subscribe",
    "Typing",
    "Unsubscribe",
    "error_frame",
    "parse_client_frame",
]

#: ``from`` of frames the service itself writes (errors).
SERVER_SENDER: Final = "realtime"


def _epoch_seconds(ts: object) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _websocket_text_header(length: int) -> bytes:
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


@dataclass(slots=True, eq=False)
class OutFrame:
    """One frame for clients, shared between all the connections that receive it."""

    text: str
    #: The channel an event belongs to (None for connection-level control frames).
    channel: str | None = None
    #: The stream id of a durable event, the resume offset.
    id: str | None = None
    #: ``id`` parsed for ordering.
    key: tuple[int, int] | None = None
    #: Publish time (epoch seconds) of an event, for the fan-out latency histogram.
    published_at: float | None = None
    #: The UTF-8 text as received from Redis, when the frame came from there.
    data: bytes | None = None
    #: An event that takes access to its room away from someone (``member.removed``…):
    #: the hub hands it to the room guard before delivering it or anything after it.
    access: bool = False
    #: Characters of the frame (its weight in a send queue).
    size: int = field(default=0, init=False)
    _sse: bytes | None = field(default=None, init=False)
    _websocket: bytes | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.size = len(self.text)

    @property
    def message(self) -> dict[str, Any]:
        """The frame as an ASGI ``websocket.send`` message."""
        return {"type": "websocket.send", "text": self.text}

    @classmethod
    def event(cls, payload: bytes, *, live: bool = True) -> OutFrame:
        """An envelope as published; raises ValueError when it is not one.

        ``live=False`` (a replay from history) leaves it out of the latency histogram.
        """
        envelope = orjson.loads(payload)
        if not isinstance(envelope, dict) or not isinstance(envelope.get("channel"), str):
            msg = "not an envelope"
            raise ValueError(msg)
        stream_id = envelope.get("id")
        key = None
        if isinstance(stream_id, str):
            try:
                key = parse_stream_id(stream_id)
            except InvalidStreamIdError:
                stream_id = None
        else:
            stream_id = None
        return cls(
            text=payload.decode(),
            channel=envelope["channel"],
            id=stream_id,
            key=key,
            published_at=_epoch_seconds(envelope.get("ts")) if live else None,
            data=payload,
            access=envelope.get("type") in ACCESS_EVENT_TYPES,
        )

    @classmethod
    def control(cls, body: dict[str, Any], *, channel: str | None = None) -> OutFrame:
        """A control frame (``subscribed``, ``pong``, ``reconnect``...) with no stream id."""
        return cls(text=orjson.dumps(body).decode(), channel=channel)

    def sse(self) -> bytes:
        """The frame as one Server-Sent Event (``id:`` = stream id when it has one)."""
        if self._sse is None:
            head = f"id: {self.id}\n" if self.id is not None else ""
            self._sse = f"{head}data: {self.text}\n\n".encode()
        return self._sse

    def websocket(self) -> bytes:
        """The frame as one unmasked, uncompressed WebSocket text frame (RFC 6455 5.2).

        Built once and written as is to every socket that receives the frame.
        """
        if self._websocket is None:
            data = self.data if self.data is not None else self.text.encode()
            self._websocket = _websocket_text_header(len(data)) + data
        return self._websocket


def error_frame(
    code: str, message: str, *, channel: str | None = None, **details: object
) -> OutFrame:
    """An ``error`` event for one connection, in the envelope shape (``id`` null).

    ``details`` join ``code`` and ``message`` in ``data`` (``ref``, ``retry_after``).
    """
    return OutFrame.control(
        {
            "id": None,
            "channel": channel,
            "type": "error",
            "data": {"code": code, "message": message, **details},
            "ts": utc_timestamp(),
            "from": SERVER_SENDER,
        },
        channel=channel,
    )


class FrameError(ValueError):
    """A client frame we cannot act on; ``code`` (and ``details``) go into the error frame."""

    def __init__(
        self, code: str, message: str, *, channel: str | None = None, **details: object
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.channel = channel
        self.details = details

    def frame(self) -> OutFrame:
        """The ``error`` frame telling the client."""
        return error_frame(self.code, self.message, channel=self.channel, **self.details)


@dataclass(frozen=True, slots=True)
class SendMessage:
    """``{"type": "message", "message": "...", "channel"?, "ref"?, "traceparent"?}``.

    ``traceparent`` (W3C) makes the message part of the client's trace.
    """

    text: str
    channel: str | None
    ref: str | None
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Typing:
    """``{"type": "typing", "channel"?}``: an ephemeral typing indicator."""

    channel: str | None


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"type": "ping"}``: answered with ``pong``."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``{"type": "subscribe", "channel": "room:x", "since"?: "<id>"}``."""

    channel: str
    since: str | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``{"type": "unsubscribe", "channel": "room:x"}``."""

    channel: str


ClientFrame = SendMessage | Typing | Ping | Subscribe | Unsubscribe


def _optional_str(body: dict[str, Any], key: str, *, limit: int = 200) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise FrameError("invalid_frame", f"'{key}' must be a non-empty string")
    return value


def parse_client_frame(raw: str | bytes) -> ClientFrame:
    """Decode one client frame; :class:`FrameError` says what is wrong with it."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError("invalid_json", "frames are JSON objects") from exc
    if not isinstance(body, dict):
        raise FrameError("invalid_frame", "frames are JSON objects with a 'type'")
    kind = body.get("type")
    if kind == "message":
        text = body.get("message")
        if not isinstance(text, str) or not text.strip():
            raise FrameError("invalid_message", "'message' must be a non-empty string")
        ref = _optional_str(body, "ref")
        reason = unstorable(text)
        if reason is not None:
            # Nothing downstream could keep it (room history is Postgres): refuse it here.
            details = {"ref": ref} if ref is not None and unstorable(ref) is None else {}
            raise FrameError("invalid_text", f"'message' {reason}", **details)
        return SendMessage(
            text, _optional_str(body, "channel"), ref, _optional_str(body, "traceparent", limit=512)
        )
    if kind == "typing":
        return Typing(_optional_str(body, "channel"))
    if kind == "ping":
        return Ping()
    if kind in {"subscribe", "unsubscribe"}:
        channel = _optional_str(body, "channel")
        if channel is None:
            raise FrameError("invalid_frame", f"'{kind}' needs a 'channel'")
        if kind == "unsubscribe":
            return Unsubscribe(channel)
        return Subscribe(channel, _optional_str(body, "since", limit=45))
    raise FrameError(
        "unknown_type", "'type' must be one of message, typing, ping, subscribe, unsubscribe"
    )
