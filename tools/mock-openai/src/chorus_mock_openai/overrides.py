"""Per-request overrides: `x-mock-*` headers and `[mock …]` directives in the prompt.

Two channels because proxies differ in what they pass through: some rewrite or
drop unknown headers, but every proxy forwards the messages. A directive in
the last user message wins over a header, which wins over the runtime config.

Directive syntax: ``[mock ttft_ms=200 inter_token_ms=5 tokens=5 fault=drop fault_after=1
retry_after=2 tag=abc]`` anywhere in the text; keys may use `-` or `_`.
Header syntax: ``x-mock-ttft-ms: 200``, ``x-mock-fault: drop``, and so on.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from chorus_mock_openai.faults import Fault, parse_fault

__all__ = ["HEADER_PREFIX", "Overrides", "from_directives", "from_headers"]

HEADER_PREFIX = "x-mock-"

_DIRECTIVE = re.compile(r"\[mock\s+([^\]]*)\]", re.IGNORECASE)
_MAX_TAG_LENGTH = 200
_MAX_DELAY = 3_600_000.0
_MAX_COUNT = 1_000_000


@dataclass(frozen=True, slots=True)
class Overrides:
    """Values that replace the configured defaults for one request; None means "not set"."""

    ttft_ms: float | None = None
    inter_token_ms: float | None = None
    tokens: int | None = None
    fault: Fault | None = None
    fault_after: int | None = None
    retry_after_s: float | None = None
    tag: str | None = None
    """Free text recorded with the request, to find it in `GET /_mock/requests?tag=`."""

    def over(self, base: Overrides) -> Overrides:
        """Combine with `base`, values set here taking precedence."""
        if base == _EMPTY:
            return self
        if self == _EMPTY:
            return base
        merged = {
            field.name: getattr(self, field.name)
            if getattr(self, field.name) is not None
            else getattr(base, field.name)
            for field in dataclasses.fields(self)
        }
        return Overrides(**merged)


_EMPTY = Overrides()


def from_headers(headers: Iterable[tuple[str, str]]) -> Overrides:
    """Overrides from `(name, value)` pairs whose lower-case names start with `x-mock-`."""
    values = {name[len(HEADER_PREFIX) :]: value for name, value in headers}
    return _build(values, source="header x-mock-")


def from_directives(text: str) -> Overrides:
    """Overrides from every `[mock key=value …]` directive in `text`, later ones winning."""
    if "[" not in text:
        return _EMPTY
    values: dict[str, str] = {}
    for match in _DIRECTIVE.finditer(text):
        for pair in match.group(1).split():
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"mock directive entry {pair!r} is not key=value")
            values[key] = value
    return _build(values, source="mock directive key ")


def _build(values: dict[str, str], *, source: str) -> Overrides:
    if not values:
        return _EMPTY
    fields: dict[str, object] = {}
    for raw_key, value in values.items():
        key = raw_key.strip().lower().replace("-", "_")
        try:
            name, parsed = _parse(key, value.strip())
        except ValueError as exc:
            raise ValueError(f"{source}{raw_key}: {exc}") from None
        fields[name] = parsed
    return Overrides(**fields)  # type: ignore[arg-type]


def _parse(key: str, value: str) -> tuple[str, object]:
    match key:
        case "ttft_ms" | "inter_token_ms":
            return key, _non_negative(value)
        case "retry_after" | "retry_after_s":
            return "retry_after_s", _non_negative(value)
        case "tokens" | "fault_after":
            return key, _count(value)
        case "fault":
            return key, parse_fault(value)
        case "tag":
            if not value or len(value) > _MAX_TAG_LENGTH:
                raise ValueError(f"tag must be 1-{_MAX_TAG_LENGTH} characters")
            return key, value
        case _:
            raise ValueError(
                "unknown key; expected ttft_ms, inter_token_ms, tokens, fault, fault_after, "
                "retry_after or tag"
            )


def _non_negative(value: str) -> float:
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= _MAX_DELAY:
        raise ValueError(f"{value!r} is not a number between 0 and {_MAX_DELAY:g}")
    return number


def _count(value: str) -> int:
    number = int(value)
    if not 0 <= number <= _MAX_COUNT:
        raise ValueError(f"{value!r} is not an integer between 0 and {_MAX_COUNT}")
    return number
