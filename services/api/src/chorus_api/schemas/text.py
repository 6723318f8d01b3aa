"""Constrained scalar types shared by the request schemas.

``Text`` refuses what Postgres cannot store and what no client means to send: the NUL
character (text and JSONB reject it) and lone UTF-16 surrogates (not encodable as UTF-8).
Without this, such input would reach the database and fail there as a 500.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

__all__ = ["BIGINT_MAX", "Id", "Text"]

#: Primary keys are Postgres bigints; a larger id cannot exist.
BIGINT_MAX = 2**63 - 1


def _storable(value: str) -> str:
    if "\x00" in value:
        msg = "must not contain NUL characters"
        raise ValueError(msg)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        msg = "must be valid Unicode (no lone surrogates)"
        raise ValueError(msg) from None
    return value


Text = Annotated[str, AfterValidator(_storable)]
Id = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
