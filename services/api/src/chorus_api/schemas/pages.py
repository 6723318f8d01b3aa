"""The list envelope ``{"items": [...], "next_cursor": ...}`` and its query parameters."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from chorus_api.domain.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

__all__ = ["CursorQuery", "LimitQuery", "PageOut"]

T = TypeVar("T")


class PageOut(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``?cursor=`` for the next (null: done)."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Opaque; pass back as ?cursor= to get the next page. Null on the last page."
    )


LimitQuery = Annotated[
    int,
    Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size (default {DEFAULT_PAGE_SIZE})."),
]
CursorQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="The next_cursor of the previous page.",
    ),
]
