"""Log lines: JSON with the request id in production, readable in dev."""

from __future__ import annotations

import logging

import orjson
import pytest

from chorus_common.logs import ConsoleFormatter, JsonFormatter, configure_logging, request_id_var


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "chorus.test", "levelname": "INFO", "msg": msg})
    record.__dict__.update(extra)
    return record


def test_json_line_carries_request_id_and_extras() -> None:
    token = request_id_var.set("req-1")
    try:
        line = JsonFormatter("api").format(_record("hello %s", user_id=7))
    finally:
        request_id_var.reset(token)
    parsed = orjson.loads(line)
    assert parsed["request_id"] == "req-1"
    assert parsed["service"] == "api"
    assert parsed["user_id"] == 7
    assert parsed["ts"].endswith("Z")
    assert "\n" not in line


def test_json_line_without_request() -> None:
    assert "request_id" not in orjson.loads(JsonFormatter("api").format(_record("x")))


def test_exceptions_stay_on_one_json_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.makeLogRecord({"msg": "failed", "exc_info": __import__("sys").exc_info()})
    line = JsonFormatter("api").format(record)
    assert "\n" not in line
    assert "ValueError: bad" in orjson.loads(line)["exc_info"]


def test_console_line_is_readable() -> None:
    token = request_id_var.set("abcdef0123456789")
    try:
        line = ConsoleFormatter().format(_record("hello", room="lobby"))
    finally:
        request_id_var.reset(token)
    assert "[abcdef01]" in line
    assert "hello" in line
    assert "room=lobby" in line


def test_configure_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="a", level="INFO", fmt="json")
    configure_logging(service="b", level="INFO", fmt="json")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_chorus", False)]
    assert len(ours) == 1
