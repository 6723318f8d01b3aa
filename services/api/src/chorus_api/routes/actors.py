"""Who is asking, for the routes of keys, teams and usage; and their shared answers."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.errors import DomainError, NotFoundError
from chorus_api.domain.keys import Actor, load_actor
from chorus_api.routes.errors import account_gone
from chorus_api.settings import ApiSettings

__all__ = ["actor_of", "forbidden", "limit_reached", "not_found"]


async def actor_of(session: AsyncSession, user_id: int, settings: ApiSettings) -> Actor:
    """The token's account, and whether it administers everything; 401 if it is gone."""
    try:
        return await load_actor(session, user_id, settings.admins)
    except NotFoundError:
        raise account_gone() from None


def not_found(message: str) -> HTTPException:
    """404 ``not_found``: absent, or not the caller's to see (we do not say which)."""
    return HTTPException(404, {"code": "not_found", "message": message})


def forbidden(exc: DomainError) -> HTTPException:
    """403 ``forbidden``: visible to the caller, but not theirs to change."""
    return HTTPException(403, {"code": "forbidden", "message": f"Not allowed: {exc}."})


def limit_reached(exc: DomainError) -> HTTPException:
    """409 ``limit_reached``: a bound on keys, teams or members."""
    return HTTPException(409, {"code": "limit_reached", "message": f"Limit reached: {exc}."})
