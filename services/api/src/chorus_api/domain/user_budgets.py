"""A user's own spend budget: one cap over every LLM call they make.

It applies through each of the user's own virtual keys and through their access token,
reserved in the same admission as the key's own budget (a team's key spends the team's
budget instead). Only administrators set it — it is a cap placed on the user, not by
them — and a user may read their own (with what the period has spent).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.errors import ForbiddenError, NotFoundError
from chorus_api.domain.keys import Actor
from chorus_schema.models import User

__all__ = ["get_user_budget", "set_user_budget"]


async def get_user_budget(session: AsyncSession, actor: Actor, user_id: int) -> User:
    """The user whose budget ``actor`` may read (their own; anyone's for an administrator)."""
    if not actor.is_admin and user_id != actor.user_id:
        raise NotFoundError
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError
    return user


async def set_user_budget(
    session: AsyncSession,
    actor: Actor,
    user_id: int,
    *,
    budget_micros: int | None,
    budget_period: str | None,
) -> User:
    """Set (or clear) a user's budget (administrators only); returns the user to copy."""
    if not actor.is_admin:
        raise ForbiddenError("only administrators set a user's budget")
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFoundError
    user.budget_micros = budget_micros
    user.budget_period = budget_period
    await session.commit()
    return user
