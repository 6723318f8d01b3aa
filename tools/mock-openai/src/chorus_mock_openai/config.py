"""The mock's settings: defaults for every request, changeable at runtime.

A frozen dataclass rather than pydantic-settings because the mock's runtime
dependencies are deliberately only uvicorn and orjson; the CLI builds it once
and the control API swaps in validated copies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ANY_MODEL", "DEFAULT_MODELS", "RUNTIME_FIELDS", "MockConfig"]

DEFAULT_MODELS = ("mock-gpt", "mock-gpt-mini")

ANY_MODEL = "*"
"""A `models` entry that makes the mock accept any model id."""

RUNTIME_FIELDS = frozenset(
    {
        "models",
        "ttft_ms",
        "inter_token_ms",
        "tokens",
        "fault_after",
        "retry_after_s",
        "require_auth",
    }
)
"""Fields `POST /_mock/config` may change."""

_MAX_DELAY_MS = 3_600_000.0
_MAX_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class MockConfig:
    """Defaults applied to every completion request unless overridden per request."""

    models: tuple[str, ...] = DEFAULT_MODELS
    """Model ids served; `*` accepts any model."""
    ttft_ms: float = 0.0
    """Delay before the first content token."""
    inter_token_ms: float = 0.0
    """Delay between consecutive content tokens."""
    tokens: int = 16
    """Completion length in tokens (before `max_tokens` caps it)."""
    fault_after: int = 2
    """Tokens sent before a mid-stream fault strikes."""
    retry_after_s: float = 1.0
    """Value advertised by the `rate_limit` fault."""
    require_auth: bool = True
    """Reject requests without `Authorization: Bearer <anything>` with 401."""
    record_limit: int = 10_000
    """How many recent requests the recorder keeps."""
    system_fingerprint: str = "fp_chorus_mock"

    def __post_init__(self) -> None:
        if not self.models or not all(isinstance(m, str) and m for m in self.models):
            raise ValueError("models must be a non-empty list of non-empty strings")
        for name in ("ttft_ms", "inter_token_ms", "retry_after_s"):
            value = getattr(self, name)
            if not 0 <= value <= _MAX_DELAY_MS:
                raise ValueError(f"{name} must be between 0 and {_MAX_DELAY_MS:g}")
        if not 0 <= self.tokens <= _MAX_TOKENS:
            raise ValueError(f"tokens must be between 0 and {_MAX_TOKENS}")
        if self.fault_after < 0:
            raise ValueError("fault_after must be >= 0")
        if self.record_limit < 1:
            raise ValueError("record_limit must be >= 1")

    def accepts_model(self, model: str) -> bool:
        """Whether a completion for `model` is served rather than answered with 404."""
        return model in self.models or ANY_MODEL in self.models

    def updated(self, changes: Mapping[str, object]) -> MockConfig:
        """A copy with JSON-sourced `changes` applied; ValueError names the bad field."""
        unknown = set(changes) - RUNTIME_FIELDS
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        typed: dict[str, object] = {}
        for name, value in changes.items():
            typed[name] = _coerce(name, value)
        return dataclasses.replace(self, **typed)  # type: ignore[arg-type]

    def as_json(self) -> dict[str, object]:
        """The configuration as the control API reports it."""
        return dataclasses.asdict(self)


def _coerce(name: str, value: object) -> object:
    if name == "models":
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            raise ValueError("'models' must be a list of strings")
        return tuple(value)
    if name == "require_auth":
        if not isinstance(value, bool):
            raise ValueError("'require_auth' must be a boolean")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"'{name}' must be a number")
    if name in ("tokens", "fault_after"):
        if not isinstance(value, int):
            raise ValueError(f"'{name}' must be an integer")
        return value
    return float(value)
