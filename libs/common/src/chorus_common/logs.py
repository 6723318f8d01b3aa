"""Logging: JSON lines in production, readable console lines in dev.

Every line carries the current request id (set by ``request_context``), so one request can
be followed across log lines and, through ``X-Request-ID``, across services. With tracing
on, a line written inside a span also carries its ``trace_id`` and ``span_id``: from a log
line to its trace, and from a trace to every line it wrote.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal

import orjson

from chorus_common.tracing import current_ids

__all__ = ["ConsoleFormatter", "JsonFormatter", "configure_logging", "request_id_var"]

#: The id of the request being served by the current task, or None outside a request.
request_id_var: ContextVar[str | None] = ContextVar("chorus_request_id", default=None)

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is kept.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI copy of msg
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, request and trace ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            line["request_id"] = request_id
        ids = current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        line.update(_extras(record))
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """Human-readable lines for a terminal: time, level, logger, request id, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        request_id = request_id_var.get()
        rid = f" [{request_id[:8]}]" if request_id else ""
        ids = current_ids()
        if ids is not None:
            rid += f" trace={ids[0]} span={ids[1]}"
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        text = f"{stamp}.{int(record.msecs):03d} {record.levelname:<7} {record.name}{rid}: "
        text += record.getMessage() + (f"  {extras}" if extras else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(*, service: str, level: str, fmt: Literal["json", "console"]) -> None:
    """Route every logger (ours, uvicorn's, arq's) through one stderr handler.

    Idempotent: calling it again replaces the handler, so tests can build many apps.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_chorus", False):
            root.removeHandler(old)
    handler._chorus = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    # Our access log replaces uvicorn's, which knows nothing of request ids.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
