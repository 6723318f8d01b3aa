"""The plan for one completion: defaults, overrides, fault rule and request merged.

Precedence, highest first: `[mock …]` directive, `x-mock-*` header, a matching
fault rule from the control API, the runtime config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from chorus_mock_openai.config import MockConfig
from chorus_mock_openai.faults import MID_STREAM_FAULTS, Fault, FaultRule
from chorus_mock_openai.overrides import Overrides
from chorus_mock_openai.validation import ChatRequest

__all__ = ["Plan", "make_plan"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Plan:
    """Exactly what the mock will send for one request."""

    tokens: int
    """Content tokens to generate (after `max_tokens`)."""
    finish_reason: str
    ttft_s: float
    inter_token_s: float
    fault: Fault | None
    fault_after: int
    """Tokens sent before a mid-stream fault, capped at `tokens`."""
    retry_after_s: float
    tag: str | None

    @property
    def tokens_before_fault(self) -> int:
        """How many tokens go out before the stream is cut (all of them if it is not)."""
        return self.fault_after if self.fault in MID_STREAM_FAULTS else self.tokens

    def token_deadline(self, index: int) -> float:
        """Seconds after the start at which token `index` is due."""
        return self.ttft_s + index * self.inter_token_s

    @property
    def duration_s(self) -> float:
        """Seconds from start until the last token is due."""
        return self.token_deadline(max(self.tokens - 1, 0))


def make_plan(
    config: MockConfig,
    request: ChatRequest,
    overrides: Overrides,
    rule: FaultRule | None,
) -> Plan:
    """Merge everything that shapes one response into a Plan."""
    wanted = overrides.tokens if overrides.tokens is not None else config.tokens
    cut = request.max_tokens is not None and request.max_tokens < wanted
    tokens = request.max_tokens if cut and request.max_tokens is not None else wanted
    fault = overrides.fault if overrides.fault is not None else (rule.fault if rule else None)
    fault_after = _first(
        overrides.fault_after,
        rule.fault_after if rule is not None and overrides.fault is None else None,
        config.fault_after,
    )
    ttft_ms = _first(overrides.ttft_ms, config.ttft_ms)
    inter_token_ms = _first(overrides.inter_token_ms, config.inter_token_ms)
    return Plan(
        tokens=tokens,
        finish_reason="length" if cut else "stop",
        ttft_s=ttft_ms / 1000,
        inter_token_s=inter_token_ms / 1000,
        fault=fault,
        fault_after=min(fault_after, tokens),
        retry_after_s=_first(overrides.retry_after_s, config.retry_after_s),
        tag=overrides.tag,
    )


def _first(*values: _T | None) -> _T:
    for value in values:
        if value is not None:
            return value
    raise AssertionError("the config always provides a value")
