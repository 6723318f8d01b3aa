"""Checking job arguments: one that can never work is a :class:`PermanentJobError`."""

from __future__ import annotations

from typing import Any

from chorus_worker.domain.errors import PermanentJobError

__all__ = ["valid_id", "valid_user_id"]


def valid_id(value: Any, name: str) -> int:
    """``value`` as a positive int (enqueuers may send ``"42"``); else a permanent error."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        msg = f"{name} must be an integer, not {type(value).__name__}"
        raise PermanentJobError(msg)
    try:
        number = int(value)
    except ValueError:
        msg = f"{name} must be an integer, not {value!r}"
        raise PermanentJobError(msg) from None
    if number < 1:
        msg = f"{name} must be positive, not {number}"
        raise PermanentJobError(msg)
    return number


def valid_user_id(user_id: Any) -> int:
    """``user_id`` as a positive int (enqueuers may send ``"42"``); else a permanent error."""
    return valid_id(user_id, "user_id")
