"""What every boundary refuses: text Postgres cannot hold."""

from __future__ import annotations

import pytest

from chorus_common.text import (
    NUL_REASON,
    SURROGATE_REASON,
    escape_unstorable,
    find_unstorable,
    unstorable,
)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("hello", None),
        ("naïve 🎶", None),
        ("", None),
        ("a\x00b", NUL_REASON),
        ("x\ud800y", SURROGATE_REASON),
        ("\udfff", SURROGATE_REASON),
        ("tab\tand\nnewline", None),
    ],
)
def test_unstorable_says_why(value: str, reason: str | None) -> None:
    assert unstorable(value) == reason


def test_find_unstorable_walks_json_and_names_the_path() -> None:
    assert find_unstorable({"a": [1, {"b": "ok"}], "c": None}) is None
    assert find_unstorable({"a": [1, {"b": "x\x00"}]}) == ("a.1.b", NUL_REASON)
    assert find_unstorable(["fine", "\ud800"]) == ("1", SURROGATE_REASON)
    path, reason = find_unstorable({"data": {"k\x00": 1}}) or ("", "")
    assert path == "data.'k\\x00'"
    assert reason == f"key {NUL_REASON}"
    assert find_unstorable(b"\x00bytes are not text") is None


def test_escaping_keeps_what_was_refused_visible_and_storable() -> None:
    assert escape_unstorable("plain \\ text") == "plain \\ text"
    escaped = escape_unstorable("a\x00b\\c\ud800")
    assert escaped == "a\\x00b\\\\c\\ud800"
    assert unstorable(escaped) is None
