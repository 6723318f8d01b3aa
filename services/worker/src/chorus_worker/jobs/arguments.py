"""Checking job arguments: one that can never work is a :class:`PermanentJobError`."""

from __future__ import annotations

from typing import Any

from chorus_worker.domain.errors import PermanentJobError

__all__ = ["valid_user_id"]


def valid_user_id(user_id: Any) -> int:
    """``user_id`` as a positive int (enqueuers may send ``"42"``); else a permanent error."""
    if isinstance(user_id, bool) or not isinstance(user_id, int | str):
        msg = f"user_id must be an integer, not {type(user_id).__name__}"
        raise PermanentJobError(msg)
    try:
        value = int(user_id)
    except ValueError:
        msg = f"user_id must be an integer, not {user_id!r}"
        raise PermanentJobError(msg) from None
    if value < 1:
        msg = f"user_id must be positive, not {value}"
        raise PermanentJobError(msg)
    return value
