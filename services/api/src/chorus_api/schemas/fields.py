"""Constrained scalar types shared by the request schemas.

``JSON_INTEGER`` makes an integer as JSON Schema means it: ``5`` and ``5.0`` are, ``true`` and
``"5"`` are not (pydantic's lax mode would coerce the last two; its strict mode would
refuse ``5.0``, which the published schema allows).

``Text`` refuses what Postgres cannot store and what no client means to send: the NUL
character (text and JSONB reject it) and lone UTF-16 surrogates (not encodable as UTF-8),
with the check every service applies at its boundary (``chorus_common.text``). Without
this, such input would reach the database and fail there as a 500.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from chorus_common.text import unstorable

__all__ = ["BIGINT_MAX", "JSON_INTEGER", "Id", "Text"]

#: Primary keys are Postgres bigints; a larger id cannot exist.
BIGINT_MAX = 2**63 - 1


def _storable(value: str) -> str:
    reason = unstorable(value)
    if reason is not None:
        msg = f"must be storable text: it {reason}"
        raise ValueError(msg)
    return value


def _not_bool_or_string(value: object) -> object:
    if isinstance(value, bool | str):
        msg = "must be an integer"
        raise ValueError(msg)
    return value


Text = Annotated[str, AfterValidator(_storable)]
#: Add after the constraints: ``Annotated[int, Field(ge=1), JSON_INTEGER]`` (placed before
#: them, pydantic would publish ``ge``/``le`` instead of ``minimum``/``maximum``).
JSON_INTEGER = BeforeValidator(_not_bool_or_string)
Id = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
