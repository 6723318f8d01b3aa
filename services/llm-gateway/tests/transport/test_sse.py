"""The stream scanners: byte-exact pass-through, usage stripping, split reads, estimates."""

from __future__ import annotations

import orjson

from chorus_gateway.transport.sse import OpenAIPassThrough

ROLE = (
    b'data: {"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],'
    b'"usage":null}\n\n'
)
TOKEN = b'data: {"id":"x","choices":[{"index":0,"delta":{"content":" word"}}],"usage":null}\n\n'
USAGE = (
    b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,'
    b'"total_tokens":9}}\n\n'
)
DONE = b"data: [DONE]\n\n"
STREAM = ROLE + TOKEN + TOKEN + USAGE + DONE


def test_a_client_that_asked_for_usage_gets_every_byte() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    out = b"".join(scanner.feed(STREAM[i : i + 37]) or b"" for i in range(0, len(STREAM), 37))
    assert out == STREAM
    assert scanner.usage == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert scanner.done


def test_usage_is_removed_for_a_client_that_did_not_ask() -> None:
    scanner = OpenAIPassThrough(wants_usage=False)
    out = scanner.feed(STREAM) or b""
    assert b"usage" not in out
    assert out.endswith(DONE)
    assert out.count(b"data: ") == 4
    assert scanner.usage is not None  # still read for billing


def test_crlf_framing_and_comments() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    assert scanner.feed(b": ping\r\n\r\n") == b": ping\n\n"
    assert not scanner.data_seen
    assert scanner.feed(TOKEN.replace(b"\n", b"\r\n")) == TOKEN
    assert scanner.data_seen


def test_an_error_event_is_noted_and_told_in_our_words() -> None:
    scanner = OpenAIPassThrough(wants_usage=False)
    event = b'data: {"error":{"message":"boom at 10.0.0.7","type":"server_error"}}\n\n'
    out = scanner.feed(TOKEN + event)
    assert out is not None
    assert out.startswith(TOKEN.replace(b',"usage":null', b""))
    told = orjson.loads(out.split(b"\n\n")[1].removeprefix(b"data: "))
    assert told["error"]["code"] == "upstream_error"
    assert b"10.0.0.7" not in out
    assert scanner.error == {"message": "boom at 10.0.0.7", "type": "server_error"}
    assert scanner.data_before_error


def test_content_that_says_error_is_not_an_error() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    chunk = b'data: {"choices":[{"delta":{"content":"error"}}]}\n\n'
    assert scanner.feed(chunk) == chunk
    assert scanner.error is None


def test_delivered_text_for_estimates() -> None:
    scanner = OpenAIPassThrough(wants_usage=True)
    scanner.feed(ROLE + TOKEN + TOKEN)
    assert scanner.delivered() == (10, 2)
