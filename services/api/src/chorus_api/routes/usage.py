"""``/api/usage``: LLM spend and tokens per day and model, of a key, a team or a user."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from chorus_api.deps import CurrentUserId, ReadSessionDep, SettingsDep
from chorus_api.domain.errors import NotFoundError
from chorus_api.domain.usage import MAX_DAYS, usage_by_day
from chorus_api.routes.actors import actor_of, not_found
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.fields import Id
from chorus_api.schemas.keys import UsageOut, UsageRow

__all__ = ["router"]

router = APIRouter(prefix="/api/usage", tags=["usage"])

# A calendar day only (pydantic's date would also take a Unix time such as 0).
_ISO_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


@router.get("", responses=error_responses(401, 404, 422, 503))
async def usage(
    *,
    user_id: CurrentUserId,
    session: ReadSessionDep,
    settings: SettingsDep,
    key_id: Annotated[Id | None, Query(description="A key you may see.")] = None,
    team_id: Annotated[Id | None, Query(description="A team you belong to.")] = None,
    user: Annotated[
        Id | None, Query(description="A user (yourself unless you are an administrator).")
    ] = None,
    start: Annotated[
        str | None, Query(alias="from", pattern=_ISO_DAY, description="First UTC day.")
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", pattern=_ISO_DAY, description="Last UTC day (today).")
    ] = None,
) -> UsageOut:
    """Spend and tokens per UTC day and model, oldest first, over at most a year (the
    last 30 days by default). Give at most one of ``key_id``, ``team_id``, ``user``;
    none is your own usage (every call billed to you, by any key or token)."""
    if sum(x is not None for x in (key_id, team_id, user)) > 1:
        raise _invalid("Give at most one of key_id, team_id, user.")
    try:
        last = date.fromisoformat(end) if end else datetime.now(UTC).date()
        first = date.fromisoformat(start) if start else last - timedelta(days=29)
    except ValueError:
        raise _invalid("from and to are days: YYYY-MM-DD.") from None
    if first > last or (last - first).days >= MAX_DAYS:
        raise _invalid(f"from must be before to, at most {MAX_DAYS} days apart.")
    actor = await actor_of(session, user_id, settings)
    try:
        rows = await usage_by_day(
            session, actor, key_id=key_id, team_id=team_id, user_id=user, start=first, end=last
        )
    except NotFoundError:
        raise not_found("No such key, team or user, or not yours to read.") from None
    items = [
        UsageRow(
            day=d,
            model=m,
            requests=r,
            prompt_tokens=p,
            completion_tokens=c,
            cost_micros=cost,
        )
        for d, m, r, p, c, cost in rows
    ]
    return UsageOut(
        items=items,
        requests=sum(i.requests for i in items),
        prompt_tokens=sum(i.prompt_tokens for i in items),
        completion_tokens=sum(i.completion_tokens for i in items),
        cost_micros=sum(i.cost_micros for i in items),
    )


def _invalid(message: str) -> HTTPException:
    return HTTPException(422, {"code": "validation_error", "message": message})
