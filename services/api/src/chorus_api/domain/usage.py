"""LLM usage you may read: spend and tokens per day and model, of a key, team or user.

Read from ``llm_usage_events`` (written by the worker from the gateway's usage jobs), by
the index of the filter used. A user reads their own usage, their keys' and their teams';
an administrator anyone's. The window is at most :data:`MAX_DAYS` days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.errors import NotFoundError
from chorus_api.domain.keys import Actor, get_key
from chorus_api.domain.teams import get_team
from chorus_schema.models import LlmUsageEvent

__all__ = ["MAX_DAYS", "UsageTotals", "usage_by_day"]

MAX_DAYS = 366

#: (day, model, requests, prompt tokens, completion tokens, cost micros)
UsageTotals = tuple[date, str, int, int, int, int]


async def usage_by_day(
    session: AsyncSession,
    actor: Actor,
    *,
    key_id: int | None,
    team_id: int | None,
    user_id: int | None,
    start: date,
    end: date,
) -> list[UsageTotals]:
    """Usage from ``start`` to ``end`` (inclusive, UTC days) of one key, team or user
    (none given: the actor's own); ``NotFoundError`` for what the actor may not read."""
    if key_id is not None:
        await get_key(session, actor, key_id)
        where = LlmUsageEvent.key_id == key_id
    elif team_id is not None:
        await get_team(session, actor, team_id)
        where = LlmUsageEvent.team_id == team_id
    else:
        wanted = actor.user_id if user_id is None else user_id
        if wanted != actor.user_id and not actor.is_admin:
            raise NotFoundError
        where = LlmUsageEvent.user_id == wanted
    since = datetime.combine(start, time(0), UTC)
    until = datetime.combine(end, time(0), UTC) + timedelta(days=1)
    day = cast(func.timezone("UTC", LlmUsageEvent.created_at), Date).label("day")
    statement = (
        select(
            day,
            LlmUsageEvent.model,
            func.count(),
            func.coalesce(func.sum(LlmUsageEvent.prompt_tokens), 0),
            func.coalesce(func.sum(LlmUsageEvent.completion_tokens), 0),
            func.coalesce(func.sum(LlmUsageEvent.cost_micros), 0),
        )
        .where(where, LlmUsageEvent.created_at >= since, LlmUsageEvent.created_at < until)
        .group_by(day, LlmUsageEvent.model)
        .order_by(day, LlmUsageEvent.model)
    )
    rows = (await session.execute(statement)).all()
    return [(d, m, int(r), int(p), int(c), int(cost)) for d, m, r, p, c, cost in rows]
