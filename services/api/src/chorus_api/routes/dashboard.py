"""``/api/dashboard``: the user, their stats and their latest notifications."""

from __future__ import annotations

from fastapi import APIRouter

from chorus_api.deps import CurrentUserId, ReadSessionDep
from chorus_api.domain.dashboard import load_dashboard
from chorus_api.domain.errors import UserGoneError
from chorus_api.routes.errors import account_gone
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.dashboard import DashboardOut

__all__ = ["router"]

router = APIRouter(prefix="/api/dashboard", tags=["dashboard"])


@router.get("", responses=error_responses(401, 503))
async def dashboard(user_id: CurrentUserId, session: ReadSessionDep) -> DashboardOut:
    """Everything the home screen shows, in one database round trip.

    ``stats.orders`` counts all your orders, ``stats.total_spent_cents`` sums the orders
    not cancelled, ``stats.messages_sent`` counts your chat messages stored from rooms;
    ``notifications`` are the ten newest, newest first.
    """
    try:
        board = await load_dashboard(session, user_id=user_id)
    except UserGoneError:
        raise account_gone() from None
    return DashboardOut.model_validate(board, from_attributes=True)
