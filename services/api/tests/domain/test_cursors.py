"""Opaque cursors round-trip, and anything we did not issue is refused."""

from __future__ import annotations

import base64

import pytest

from chorus_api.domain.cursors import decode_cursor, encode_cursor
from chorus_api.domain.errors import InvalidCursorError


@pytest.mark.parametrize("key", [1, 2**63 - 1, "1764304260000-3"])
def test_round_trip(key: int | str) -> None:
    cursor = encode_cursor("orders", key)
    assert cursor.isascii()
    assert "=" not in cursor  # URL-safe without padding
    assert decode_cursor("orders", cursor) == key


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        "e30",  # {}
        base64.urlsafe_b64encode(b'{"l":"orders","k":true}').decode(),
        base64.urlsafe_b64encode(b'{"l":"orders","k":[1]}').decode(),
        base64.urlsafe_b64encode(b'{"l":"orders","k":-1}').decode(),
        base64.urlsafe_b64encode(b'{"l":"orders","k":99999999999999999999}').decode(),
        "x" * 500,
    ],
)
def test_garbage_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor("orders", cursor)


def test_cursor_of_another_list_is_refused() -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor("room", encode_cursor("orders", 5))
