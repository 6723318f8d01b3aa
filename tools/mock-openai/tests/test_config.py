"""MockConfig validation and runtime updates."""

from __future__ import annotations

from typing import Any

import pytest

from chorus_mock_openai.config import MockConfig


def test_defaults() -> None:
    config = MockConfig()

    assert config.models == ("mock-gpt", "mock-gpt-mini")
    assert (config.ttft_ms, config.inter_token_ms, config.tokens, config.fault_after) == (
        0,
        0,
        16,
        2,
    )
    assert config.require_auth
    assert config.record_limit == 10_000


@pytest.mark.parametrize(
    "fields",
    [{"models": ()}, {"ttft_ms": -1}, {"tokens": -1}, {"fault_after": -1}, {"record_limit": 0}],
)
def test_invalid_values_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
        MockConfig(**fields)


def test_wildcard_accepts_any_model() -> None:
    assert not MockConfig().accepts_model("gpt-4o")
    assert MockConfig(models=("*",)).accepts_model("gpt-4o")


def test_updated_coerces_json_values() -> None:
    updated = MockConfig().updated({"ttft_ms": 5, "models": ["a"], "require_auth": False})

    assert updated.ttft_ms == 5.0
    assert isinstance(updated.ttft_ms, float)
    assert updated.models == ("a",)
    assert not updated.require_auth


@pytest.mark.parametrize(
    "changes",
    [{"tokens": True}, {"tokens": 2.5}, {"models": "a"}, {"require_auth": 1}, {"record_limit": 3}],
)
def test_updated_refuses_bad_changes(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
        MockConfig().updated(changes)
