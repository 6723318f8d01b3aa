"""Frames: events parsed once, control frames, and client frame validation."""

from __future__ import annotations

import orjson
import pytest

from chorus_common.events import EventBus
from chorus_realtime.domain.frames import (
    FrameError,
    OutFrame,
    Ping,
    SendMessage,
    Subscribe,
    error_frame,
    parse_client_frame,
)


def test_an_event_is_parsed_once_and_shared() -> None:
    body = EventBus.encode("room:a", "message", {"message": "hi"}, "7")
    payload = b'{"id":"1700000000000-3",' + body[1:]
    frame = OutFrame.event(payload)
    assert frame.id == "1700000000000-3"
    assert frame.key == (1700000000000, 3)
    assert frame.channel == "room:a"
    assert frame.published_at is not None
    assert frame.message == {"type": "websocket.send", "text": payload.decode()}
    assert frame.sse() == b"id: 1700000000000-3\ndata: " + payload + b"\n\n"
    assert frame.sse() is frame.sse()
    replayed = OutFrame.event(payload, live=False)
    assert replayed.published_at is None


def test_ephemeral_events_have_no_id_and_errors_look_like_envelopes() -> None:
    body = EventBus.encode("room:a", "typing", {}, "7")
    frame = OutFrame.event(b'{"id":null,' + body[1:])
    assert frame.id is None
    assert frame.key is None
    assert frame.sse().startswith(b"data: ")
    error = orjson.loads(error_frame("rate_limited", "slow down").text)
    assert error["type"] == "error"
    assert error["data"] == {"code": "rate_limited", "message": "slow down"}
    assert set(error) == {"id", "channel", "type", "data", "ts", "from"}
    with pytest.raises(ValueError, match="envelope"):
        OutFrame.event(b"[1]")


def test_client_frames() -> None:
    assert parse_client_frame('{"type":"message","message":"hi"}') == SendMessage("hi", None, None)
    assert parse_client_frame('{"type":"ping"}') == Ping()
    assert parse_client_frame('{"type":"subscribe","channel":"room:b","since":"1-0"}') == Subscribe(
        "room:b", "1-0"
    )
    for raw, code in [
        ("nope", "invalid_json"),
        ("[]", "invalid_frame"),
        ('{"type":"message","message":"  "}', "invalid_message"),
        ('{"type":"message","message":5}', "invalid_message"),
        ('{"type":"subscribe"}', "invalid_frame"),
        ('{"type":"shout"}', "unknown_type"),
    ]:
        with pytest.raises(FrameError) as caught:
            parse_client_frame(raw)
        assert caught.value.code == code
