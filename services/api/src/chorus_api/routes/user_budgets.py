"""``/api/users/{id}/budget``: a user's own spend budget over every LLM call they make.

An administrator sets or removes it; the user (or an administrator) reads it with what the
current period has spent.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from chorus_api.deps import CurrentUserId, KeyDirectoryDep, SessionDep, SettingsDep
from chorus_api.domain.errors import ForbiddenError, NotFoundError
from chorus_api.domain.key_directory import KeyDirectory
from chorus_api.domain.user_budgets import get_user_budget, set_user_budget
from chorus_api.routes.actors import actor_of, forbidden, not_found
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.fields import BIGINT_MAX
from chorus_api.schemas.keys import BudgetOut, BudgetSetIn, UserBudgetOut, budget_columns
from chorus_schema.models import User

__all__ = ["router"]

router = APIRouter(prefix="/api/users", tags=["keys"])

UserId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


async def _out(directory: KeyDirectory, user: User) -> UserBudgetOut:
    if user.budget_micros is None or user.budget_period is None:
        return UserBudgetOut(user_id=user.id)
    return UserBudgetOut(
        user_id=user.id,
        budget=BudgetOut(
            amount_micros=user.budget_micros,
            period=user.budget_period,
            spent_micros=await directory.user_spend(user),
        ),
    )


@router.get("/{user_id}/budget", responses=error_responses(401, 404, 422, 503))
async def read_budget(
    user_id: UserId,
    me: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
) -> UserBudgetOut:
    """Your own budget (anyone's, for an administrator), with the current period's spend."""
    actor = await actor_of(session, me, settings)
    try:
        user = await get_user_budget(session, actor, user_id)
    except NotFoundError:
        raise not_found("No such user.") from None
    return await _out(directory, user)


@router.put("/{user_id}/budget", responses=error_responses(400, 401, 403, 404, 413, 422, 503))
async def set_budget(
    *,
    user_id: UserId,
    body: BudgetSetIn,
    me: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
) -> UserBudgetOut:
    """Set or remove the budget over every LLM call of the user — through each of their own
    keys and their access token (administrators only)."""
    actor = await actor_of(session, me, settings)
    try:
        user = await set_user_budget(
            session,
            actor,
            user_id,
            **budget_columns(body.budget),
        )
    except NotFoundError:
        raise not_found("No such user.") from None
    except ForbiddenError as exc:
        raise forbidden(exc) from None
    if not await directory.publish_budget(user):
        # Committed, but the gateways may not know yet: say so rather than pretend.
        raise HTTPException(
            503,
            {
                "code": "service_unavailable",
                "message": "The budget is saved, but the gateways could not be told yet. "
                "Retry to make sure.",
            },
            headers={"Retry-After": "1"},
        )
    return await _out(directory, user)
