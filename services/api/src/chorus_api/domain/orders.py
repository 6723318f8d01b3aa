"""Orders of the current user: create, list (keyset pages), read, change, delete.

Lifecycle (anything else is a 409 ``invalid_transition``)::

    pending ──► paid ──► shipped
       │          │
       └──────────┴──► cancelled

``shipped`` and ``cancelled`` are final. Who moves it: **the buyer may only cancel a
pending order**; ``paid`` (payment), ``shipped`` and cancelling a paid order (a refund)
are the shop's — service code calls :func:`update_order` with ``by="service"``, and a
buyer asking for them gets 403 ``transition_forbidden``. ``item``, ``quantity`` and
``amount_cents`` (the order's total, in cents) may only change while the order is
``pending`` (409 ``order_not_editable`` after). An order of another user is "not found":
we never say it exists. Every change adds a notification in the same transaction and,
once committed, publishes ``order.created``/``order.updated``/``order.deleted`` on
``user:<id>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.cursors import decode_cursor, encode_cursor
from chorus_api.domain.errors import (
    ForbiddenTransitionError,
    InvalidCursorError,
    InvalidTransitionError,
    NotFoundError,
    OrderNotEditableError,
    UserGoneError,
)
from chorus_api.domain.pages import Page
from chorus_common.events import EventBus
from chorus_schema.models import Notification, Order
from chorus_schema.notifications import add_notification, publish_notification

__all__ = [
    "BUYER_TRANSITIONS",
    "TRANSITIONS",
    "Actor",
    "OrderChanges",
    "create_order",
    "delete_order",
    "get_order",
    "list_orders",
    "order_payload",
    "update_order",
]

logger = logging.getLogger("chorus.api.orders")

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"shipped", "cancelled"}),
    "shipped": frozenset(),
    "cancelled": frozenset(),
}
#: The part of the lifecycle a buyer may move on their own order: cancel it while pending.
BUYER_TRANSITIONS: dict[str, frozenset[str]] = {"pending": frozenset({"cancelled"})}
#: Who asks for a change: the order's buyer (the api's routes) or the shop's own code.
Actor = Literal["buyer", "service"]
_LIST = "orders"
SENDER = "api"


def order_payload(order: Order) -> dict[str, Any]:
    """An order as clients see it (API responses and event data alike)."""
    return {
        "id": order.id,
        "item": order.item,
        "quantity": order.quantity,
        "amount_cents": order.amount_cents,
        "status": order.status,
        "created_at": order.created_at.isoformat().replace("+00:00", "Z"),
    }


async def _publish(bus: EventBus, notification: Notification) -> None:
    # After the commit the row is durable and the dashboard shows it; a Redis outage here
    # only costs the live event, so it must not turn a committed change into an error.
    try:
        await publish_notification(bus, notification, sender=SENDER)
    except Exception:
        logger.warning("could not publish %s", notification.type, exc_info=True)


async def create_order(
    session: AsyncSession,
    bus: EventBus,
    *,
    user_id: int,
    item: str,
    quantity: int,
    amount_cents: int,
) -> Order:
    """Create a pending order, notify the user."""
    order = Order(user_id=user_id, item=item, quantity=quantity, amount_cents=amount_cents)
    session.add(order)
    try:
        await session.flush()
    except IntegrityError as exc:  # the only foreign key: the token's user was deleted
        await session.rollback()
        raise UserGoneError(user_id) from exc
    notification = await add_notification(
        session, user_id=user_id, type_="order.created", data={"order": order_payload(order)}
    )
    await session.commit()
    await _publish(bus, notification)
    return order


async def list_orders(
    session: AsyncSession,
    *,
    user_id: int,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
) -> Page[Order]:
    """The user's orders, newest first, ``limit`` at a time, optionally of one status."""
    query = select(Order).where(Order.user_id == user_id)
    if status is not None:
        query = query.where(Order.status == status)
    if cursor is not None:
        after = decode_cursor(_LIST, cursor)
        if not isinstance(after, int):
            msg = "cursor is malformed"
            raise InvalidCursorError(msg)
        query = query.where(Order.id < after)
    rows = list((await session.scalars(query.order_by(Order.id.desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, encode_cursor(_LIST, items[-1].id) if more else None)


async def get_order(
    session: AsyncSession, *, user_id: int, order_id: int, for_update: bool = False
) -> Order:
    """One of the user's orders; :class:`NotFoundError` for anyone else's."""
    query = select(Order).where(Order.id == order_id, Order.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    order = await session.scalar(query)
    if order is None:
        raise NotFoundError(order_id)
    return order


@dataclass(frozen=True, slots=True)
class OrderChanges:
    """What a PATCH asks to change (None: leave as is)."""

    item: str | None = None
    quantity: int | None = None
    amount_cents: int | None = None
    status: str | None = None


async def update_order(
    session: AsyncSession,
    bus: EventBus,
    *,
    user_id: int,
    order_id: int,
    changes: OrderChanges,
    by: Actor = "buyer",
) -> Order:
    """Apply ``changes`` under a row lock, following the lifecycle; notify if anything moved.

    A status change the lifecycle allows but ``by`` may not make is
    :class:`ForbiddenTransitionError`; one the lifecycle forbids, :class:`InvalidTransitionError`.
    """
    order = await get_order(session, user_id=user_id, order_id=order_id, for_update=True)
    edits = {
        field: value
        for field in ("item", "quantity", "amount_cents")
        if (value := getattr(changes, field)) is not None and value != getattr(order, field)
    }
    error: Exception | None = None
    if edits and order.status != "pending":
        error = OrderNotEditableError(
            f"only pending orders can be edited; this one is {order.status}"
        )
    elif changes.status is not None and changes.status != order.status:
        allowed = TRANSITIONS if by == "service" else BUYER_TRANSITIONS
        if changes.status in allowed.get(order.status, frozenset()):
            edits["status"] = changes.status
        elif changes.status in TRANSITIONS[order.status]:
            error = ForbiddenTransitionError(order.status, changes.status)
        else:
            error = InvalidTransitionError(order.status, changes.status)
    if error is not None or not edits:
        # Commit (not roll back) to release the row lock: a rollback would expire the
        # loaded order, and nothing was changed anyway.
        await session.commit()
        if error is not None:
            raise error
        return order
    previous_status = order.status
    for field, value in edits.items():
        setattr(order, field, value)
    await session.flush()
    data: dict[str, Any] = {"order": order_payload(order), "changed": sorted(edits)}
    if "status" in edits:
        data["previous_status"] = previous_status
    notification = await add_notification(
        session, user_id=user_id, type_="order.updated", data=data
    )
    await session.commit()
    await _publish(bus, notification)
    return order


async def delete_order(
    session: AsyncSession, bus: EventBus, *, user_id: int, order_id: int
) -> None:
    """Delete one of the user's orders and notify."""
    order = await get_order(session, user_id=user_id, order_id=order_id, for_update=True)
    await session.delete(order)
    notification = await add_notification(
        session, user_id=user_id, type_="order.deleted", data={"order_id": order_id}
    )
    await session.commit()
    await _publish(bus, notification)
