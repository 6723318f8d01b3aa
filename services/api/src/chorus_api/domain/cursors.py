"""Opaque pagination cursors: ``base64url(JSON {"l": <list>, "k": <key>})``.

Lists are keyset-paginated: a cursor carries the sort key of the last item served and the
next page starts strictly after it, so pages neither skip nor repeat rows when new ones
arrive meanwhile, and a deep page costs what the first does. Clients must treat cursors as
opaque (the encoding may change); the list name inside stops a cursor of one list from
being replayed against another. A cursor is not a secret — it only names a position in a
list the caller may read anyway — so it is not signed.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from chorus_api.domain.errors import InvalidCursorError

__all__ = ["BIGINT_MAX", "decode_cursor", "decode_id_cursor", "encode_cursor"]

MAX_CURSOR_LENGTH = 200
#: Keys are Postgres ``bigint`` ids; anything larger could not have been issued by us.
BIGINT_MAX = 2**63 - 1


def encode_cursor(list_name: str, key: int | str) -> str:
    """The cursor that resumes ``list_name`` after the item whose sort key is ``key``."""
    raw = orjson.dumps({"l": list_name, "k": key})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(list_name: str, cursor: str) -> int | str:
    """The sort key inside ``cursor``; :class:`InvalidCursorError` if it is not ours."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        msg = "cursor too long"
        raise InvalidCursorError(msg)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        msg = "cursor is not one this api issued"
        raise InvalidCursorError(msg) from exc
    if not isinstance(value, dict) or value.get("l") != list_name:
        msg = "cursor belongs to another list"
        raise InvalidCursorError(msg)
    key = value.get("k")
    if isinstance(key, bool) or not isinstance(key, int | str):
        msg = "cursor is malformed"
        raise InvalidCursorError(msg)
    if isinstance(key, int) and not 0 <= key <= BIGINT_MAX:
        msg = "cursor is out of range"
        raise InvalidCursorError(msg)
    return key


def decode_id_cursor(list_name: str, cursor: str) -> int:
    """The id inside a cursor of a list keyed by id; :class:`InvalidCursorError` otherwise."""
    key = decode_cursor(list_name, cursor)
    if not isinstance(key, int):
        msg = "cursor is malformed"
        raise InvalidCursorError(msg)
    return key
