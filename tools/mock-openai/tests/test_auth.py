"""The bearer-token check."""

from __future__ import annotations

import pytest

from chorus_mock_openai.auth import has_bearer_token


@pytest.mark.parametrize("value", [b"Bearer sk-1", b"bearer x", b"BEARER  key "])
def test_any_non_empty_bearer_token_passes(value: bytes) -> None:
    assert has_bearer_token(value)


@pytest.mark.parametrize(
    "value", [None, b"", b"Bearer ", b"Bearer    ", b"Basic dXNlcjpw", b"sk-1"]
)
def test_missing_or_other_schemes_fail(value: bytes | None) -> None:
    assert not has_bearer_token(value)
