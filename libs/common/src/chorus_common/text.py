"""Text a downstream store can hold: what every boundary refuses before anything is kept.

Postgres refuses two things any JSON parser or WebSocket library lets through: the NUL
character (``text`` columns cannot hold it, ``jsonb`` refuses ``\\u0000``) and lone UTF-16
surrogates (they have no UTF-8 encoding, so neither Postgres nor Redis nor orjson can
write them). Text that reaches a store with either fails there — as a 500, or worse, as
a batch that fails on every run. So the api (422), realtime (an ``error`` frame), the
gateway (400) and the worker's jobs refuse it where it enters, with these checks, and
the worker's batch jobs still isolate whatever slips past.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

__all__ = ["NUL_REASON", "SURROGATE_REASON", "escape_unstorable", "find_unstorable", "unstorable"]

NUL_REASON: Final = "contains a NUL character (\\u0000)"
SURROGATE_REASON: Final = "contains a lone UTF-16 surrogate (not valid Unicode)"


def unstorable(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None when it can."""
    if "\x00" in value:
        return NUL_REASON
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE_REASON
    return None


def find_unstorable(value: object, path: str = "") -> tuple[str, str] | None:
    """The first string in a JSON-like value that cannot be stored: ``(path, reason)``.

    Keys count as strings too; ``path`` is dotted (``data.items.2``), empty for the value
    itself. Non-string scalars are storable.
    """
    if isinstance(value, str):
        reason = unstorable(value)
        return None if reason is None else (path, reason)
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            if isinstance(key, str) and (reason := unstorable(key)) is not None:
                # The path goes into error messages: spell the bad key out, escaped.
                return (f"{path}.{key!a}" if path else ascii(key)), f"key {reason}"
            here = f"{path}.{name}" if path else name
            found = find_unstorable(item, here)
            if found is not None:
                return found
        return None
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for index, item in enumerate(value):
            found = find_unstorable(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def escape_unstorable(value: str) -> str:
    """``value`` with NUL and lone surrogates spelled out (``\\x00``, ``\\ud800``).

    For records *about* refused input (dead letters, log lines): they must be storable
    themselves and still show what was refused.
    """
    if unstorable(value) is None:
        return value
    escaped = value.replace("\\", "\\\\").replace("\x00", "\\x00")
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")
