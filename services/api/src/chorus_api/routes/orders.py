"""``/api/orders``: the current user's orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response

from chorus_api.deps import BusDep, CurrentUserId, ReadSessionDep, SessionDep
from chorus_api.domain.errors import (
    ForbiddenTransitionError,
    InvalidCursorError,
    InvalidTransitionError,
    NotFoundError,
    OrderNotEditableError,
    UserGoneError,
)
from chorus_api.domain.orders import (
    OrderChanges,
    create_order,
    delete_order,
    get_order,
    list_orders,
    update_order,
)
from chorus_api.domain.pages import DEFAULT_PAGE_SIZE
from chorus_api.routes.errors import account_gone
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.fields import BIGINT_MAX
from chorus_api.schemas.orders import OrderCreateIn, OrderOut, OrderStatus, OrderUpdateIn
from chorus_api.schemas.pages import CursorQuery, LimitQuery, PageOut

__all__ = ["router"]

router = APIRouter(prefix="/api/orders", tags=["orders"])

OrderId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


def _not_found() -> HTTPException:
    return HTTPException(404, {"code": "not_found", "message": "No such order."})


@router.post("", status_code=201, responses=error_responses(400, 401, 413, 422, 503))
async def create(
    body: OrderCreateIn, user_id: CurrentUserId, session: SessionDep, bus: BusDep
) -> OrderOut:
    """Place an order (``pending``); publishes ``order.created`` on ``user:<id>``."""
    try:
        order = await create_order(
            session,
            bus,
            user_id=user_id,
            item=body.item,
            quantity=body.quantity,
            amount_cents=body.amount_cents,
        )
    except UserGoneError:
        raise account_gone() from None
    return OrderOut.model_validate(order)


@router.get("", responses=error_responses(401, 422, 503, s422="invalid_cursor"))
async def list_(
    user_id: CurrentUserId,
    session: ReadSessionDep,
    limit: LimitQuery = DEFAULT_PAGE_SIZE,
    cursor: CursorQuery = None,
    status: Annotated[OrderStatus | None, Query(description="Only orders in this status.")] = None,
) -> PageOut[OrderOut]:
    """Your orders, newest first, a page at a time."""
    try:
        page = await list_orders(
            session, user_id=user_id, limit=limit, cursor=cursor, status=status
        )
    except InvalidCursorError as exc:
        raise HTTPException(422, {"code": "invalid_cursor", "message": str(exc)}) from None
    return PageOut[OrderOut](
        items=[OrderOut.model_validate(o) for o in page.items], next_cursor=page.next_cursor
    )


@router.get("/{order_id}", responses=error_responses(401, 404, 422, 503))
async def read(order_id: OrderId, user_id: CurrentUserId, session: ReadSessionDep) -> OrderOut:
    """One of your orders (anyone else's is 404)."""
    try:
        order = await get_order(session, user_id=user_id, order_id=order_id)
    except NotFoundError:
        raise _not_found() from None
    return OrderOut.model_validate(order)


@router.patch(
    "/{order_id}",
    responses=error_responses(
        400,
        401,
        403,
        404,
        409,
        413,
        422,
        503,
        s403="transition_forbidden",
        s409="invalid_transition",
    ),
)
async def update(
    order_id: OrderId,
    body: OrderUpdateIn,
    user_id: CurrentUserId,
    session: SessionDep,
    bus: BusDep,
) -> OrderOut:
    """Edit a pending order or move it along its lifecycle; publishes ``order.updated``.

    The lifecycle is pending → paid | cancelled, paid → shipped | cancelled; shipped and
    cancelled are final (409 ``invalid_transition``). You may cancel a pending order;
    paying, shipping and cancelling a paid order are the shop's (403
    ``transition_forbidden``). Item, quantity and amount change only while pending (409
    ``order_not_editable``).
    """
    changes = OrderChanges(
        item=body.item, quantity=body.quantity, amount_cents=body.amount_cents, status=body.status
    )
    try:
        order = await update_order(
            session, bus, user_id=user_id, order_id=order_id, changes=changes
        )
    except NotFoundError:
        raise _not_found() from None
    except ForbiddenTransitionError as exc:
        raise HTTPException(
            403,
            {
                "code": "transition_forbidden",
                "message": f"Only the shop moves an order from {exc.current!r} to "
                f"{exc.requested!r}; you may cancel an order while it is pending.",
            },
        ) from None
    except InvalidTransitionError as exc:
        raise HTTPException(409, {"code": "invalid_transition", "message": str(exc)}) from None
    except OrderNotEditableError as exc:
        raise HTTPException(409, {"code": "order_not_editable", "message": str(exc)}) from None
    return OrderOut.model_validate(order)


@router.delete("/{order_id}", status_code=204, responses=error_responses(401, 404, 422, 503))
async def delete(
    order_id: OrderId, user_id: CurrentUserId, session: SessionDep, bus: BusDep
) -> Response:
    """Delete one of your orders; publishes ``order.deleted``."""
    try:
        await delete_order(session, bus, user_id=user_id, order_id=order_id)
    except NotFoundError:
        raise _not_found() from None
    return Response(status_code=204)
