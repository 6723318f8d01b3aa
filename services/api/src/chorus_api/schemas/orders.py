"""Orders: creation, changes, and the order as clients see it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from chorus_api.schemas.fields import JSON_INTEGER, Text

__all__ = [
    "MAX_AMOUNT_CENTS",
    "MAX_QUANTITY",
    "OrderCreateIn",
    "OrderOut",
    "OrderStatus",
    "OrderUpdateIn",
]

OrderStatus = Literal["pending", "paid", "shipped", "cancelled"]
MAX_QUANTITY = 1_000_000
#: Ten billion in the currency's main unit: far beyond any order, far below bigint.
MAX_AMOUNT_CENTS = 10**12

Item = Annotated[Text, Field(min_length=1, max_length=200, description="What is ordered.")]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY), JSON_INTEGER]
AmountCents = Annotated[
    int, Field(ge=0, le=MAX_AMOUNT_CENTS, description="The order's total, in cents."), JSON_INTEGER
]


class OrderCreateIn(BaseModel):
    """A new order; it starts ``pending``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"item": "keyboard", "quantity": 2, "amount_cents": 9998}]},
    )

    item: Item
    quantity: Quantity
    amount_cents: AmountCents


class OrderUpdateIn(BaseModel):
    """Changes to an order: edits while ``pending``, and cancelling it while ``pending``.

    The lifecycle is pending → paid | cancelled, paid → shipped | cancelled; shipped and
    cancelled are final. Paying, shipping and cancelling a paid order are the shop's.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"status": "cancelled"}, {"quantity": 3, "amount_cents": 14997}]
        },
    )

    item: Item | None = None
    quantity: Quantity | None = None
    amount_cents: AmountCents | None = None
    status: OrderStatus | None = None


class OrderOut(BaseModel):
    """An order."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "item": "keyboard",
                    "quantity": 2,
                    "amount_cents": 9998,
                    "status": "pending",
                    "created_at": "2026-11-28T04:31:00.5Z",
                }
            ]
        },
    )

    id: int
    item: str
    quantity: int
    amount_cents: int
    status: OrderStatus
    created_at: datetime
