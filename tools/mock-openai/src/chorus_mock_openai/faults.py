"""Fault modes and the schedule that applies them to upcoming requests.

A fault is chosen per request by, in order of precedence: a `[mock fault=…]`
directive in the last user message, an `x-mock-fault` header, then the first
matching rule queued through `POST /_mock/config`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "MID_STREAM_FAULTS",
    "DroppedResponseLogFilter",
    "Fault",
    "FaultRule",
    "FaultSchedule",
    "parse_fault",
]


class Fault(StrEnum):
    """How a request should misbehave."""

    ERROR_BEFORE_START = "error_before_start"
    """HTTP 500 `server_error` JSON instead of a completion."""
    RATE_LIMIT = "rate_limit"
    """HTTP 429 `rate_limit_exceeded` with `retry-after`."""
    ERROR_MID_STREAM = "error_mid_stream"
    """After `fault_after` tokens, a `data: {"error": …}` event; the stream ends, no [DONE]."""
    DROP = "drop"
    """After `fault_after` tokens, the connection is closed mid-body (incomplete chunked read)."""
    HANG = "hang"
    """Nothing is sent, not even headers, until the client goes away."""
    HANG_MID_STREAM = "hang_mid_stream"
    """After `fault_after` tokens, nothing more is sent; the connection stays open."""
    MISSING_USAGE = "missing_usage"
    """The completion succeeds but carries no usage, even when asked for."""
    SLOW_HEADERS = "slow_headers"
    """Response headers are held back until the first token (after the TTFT delay)."""


MID_STREAM_FAULTS = frozenset({Fault.ERROR_MID_STREAM, Fault.DROP, Fault.HANG_MID_STREAM})


def parse_fault(value: str) -> Fault:
    """Parse a fault name, raising ValueError that lists the valid names."""
    try:
        return Fault(value.strip().lower())
    except ValueError:
        names = ", ".join(fault.value for fault in Fault)
        raise ValueError(f"unknown fault {value!r}; expected one of: {names}") from None


@dataclass(slots=True)
class FaultRule:
    """A fault queued for upcoming requests, optionally only for one model."""

    fault: Fault
    remaining: int | None = None
    """How many more requests it applies to; None means until cleared."""
    model: str | None = None
    fault_after: int | None = None

    def matches(self, model: str) -> bool:
        """Whether this rule applies to a request for `model`."""
        return (self.remaining is None or self.remaining > 0) and (
            self.model is None or self.model == model
        )

    @classmethod
    def from_json(cls, data: object) -> FaultRule:
        """Build a rule from the control API's `{"mode", "count", "model", "after"}` object."""
        if not isinstance(data, Mapping):
            raise ValueError('\'fault\' must be an object like {"mode": "rate_limit"}')
        unknown = set(data) - {"mode", "count", "model", "after"}
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        mode = data.get("mode")
        if not isinstance(mode, str):
            raise ValueError("'fault.mode' must be a fault name")
        count = _optional_count(data.get("count"), "fault.count", minimum=1)
        after = _optional_count(data.get("after"), "fault.after", minimum=0)
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise ValueError("'fault.model' must be a string")
        return cls(fault=parse_fault(mode), remaining=count, model=model, fault_after=after)

    def as_json(self) -> dict[str, object]:
        """The rule as the control API reports it."""
        return {
            "mode": self.fault.value,
            "remaining": self.remaining,
            "model": self.model,
            "after": self.fault_after,
        }


def _optional_count(value: object, name: str, *, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{name}' must be an integer >= {minimum}")
    return value


class FaultSchedule:
    """Rules queued through the control API, consumed first-match-first."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        """Queue a rule behind the existing ones."""
        self._rules.append(rule)

    def clear(self) -> None:
        """Drop every queued rule."""
        self._rules.clear()

    def take(self, model: str) -> FaultRule | None:
        """Consume one application of the first rule matching `model`, if any."""
        if not self._rules:
            return None
        for rule in self._rules:
            if rule.matches(model):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                return rule
        return None

    def as_json(self) -> list[dict[str, object]]:
        """The queued rules, in order."""
        return [rule.as_json() for rule in self._rules]


class DroppedResponseLogFilter(logging.Filter):
    """Silence uvicorn's complaint about the responses the `drop` fault cuts on purpose.

    ASGI offers no way to abort a connection other than returning without
    finishing the response, which uvicorn reports as an error. Each deliberate
    drop announces itself here first, so genuine occurrences still get logged.
    """

    MESSAGE = "ASGI callable returned without completing response."

    def __init__(self) -> None:
        super().__init__()
        self._expected = 0

    def expect_drop(self) -> None:
        """Note that the next incomplete-response error is deliberate."""
        self._expected += 1

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop one expected incomplete-response record; keep everything else."""
        if self._expected and record.getMessage() == self.MESSAGE:
            self._expected -= 1
            return False
        return True
