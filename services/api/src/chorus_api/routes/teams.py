"""``/api/teams``: teams, their members and their budget (the budget: administrators)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from chorus_api.deps import CurrentUserId, KeyDirectoryDep, SessionDep, SettingsDep
from chorus_api.domain.errors import (
    DuplicateNameError,
    ForbiddenError,
    LimitReachedError,
    NotFoundError,
)
from chorus_api.domain.key_directory import KeyDirectory
from chorus_api.domain.teams import (
    add_member,
    create_team,
    get_team,
    list_teams,
    remove_member,
    set_team_budget,
)
from chorus_api.routes.actors import actor_of, forbidden, limit_reached, not_found
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.fields import BIGINT_MAX
from chorus_api.schemas.keys import (
    BudgetOut,
    BudgetSetIn,
    MemberIn,
    MemberOut,
    TeamCreateIn,
    TeamDetailOut,
    TeamOut,
    budget_columns,
)
from chorus_schema.models import Team, TeamMember

__all__ = ["router"]

router = APIRouter(prefix="/api/teams", tags=["teams"])

TeamId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
UserId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


async def _budget(directory: KeyDirectory, team: Team) -> BudgetOut | None:
    if team.budget_micros is None or team.budget_period is None:
        return None
    return BudgetOut(
        amount_micros=team.budget_micros,
        period=team.budget_period,
        spent_micros=await directory.team_spend(team),
    )


async def _detail(
    directory: KeyDirectory, team: Team, members: list[tuple[TeamMember, str]]
) -> TeamDetailOut:
    return TeamDetailOut(
        id=team.id,
        name=team.name,
        created_at=team.created_at,
        budget=await _budget(directory, team),
        members=[MemberOut(user_id=m.user_id, email=email, role=m.role) for m, email in members],
    )


@router.post("", status_code=201, responses=error_responses(400, 401, 409, 413, 422, 503))
async def create(
    body: TeamCreateIn,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
) -> TeamDetailOut:
    """A new team, with you as its admin."""
    actor = await actor_of(session, user_id, settings)
    try:
        team = await create_team(
            session, actor, name=body.name, max_teams=settings.teams_max_per_user
        )
    except DuplicateNameError:
        raise HTTPException(
            409, {"code": "name_taken", "message": "A team with this name exists."}
        ) from None
    except LimitReachedError as exc:
        raise limit_reached(exc) from None
    team, members = await get_team(session, actor, team.id)
    return await _detail(directory, team, members)


@router.get("", responses=error_responses(401, 403, 422, 503))
async def list_(
    *,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
    all_teams: Annotated[
        bool, Query(alias="all", description="Every team (administrators only).")
    ] = False,
) -> list[TeamOut]:
    """Your teams (every team, for an administrator asking for ``all``)."""
    actor = await actor_of(session, user_id, settings)
    try:
        teams = await list_teams(session, actor, everyone=all_teams)
    except ForbiddenError as exc:
        raise forbidden(exc) from None
    budgets = await asyncio.gather(*(_budget(directory, t) for t in teams))
    return [
        TeamOut(id=t.id, name=t.name, created_at=t.created_at, budget=b)
        for t, b in zip(teams, budgets, strict=True)
    ]


@router.get("/{team_id}", responses=error_responses(401, 404, 422, 503))
async def read(
    team_id: TeamId,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
) -> TeamDetailOut:
    """A team you belong to, with its members and budget."""
    actor = await actor_of(session, user_id, settings)
    try:
        team, members = await get_team(session, actor, team_id)
    except NotFoundError:
        raise not_found("No such team.") from None
    return await _detail(directory, team, members)


@router.post(
    "/{team_id}/members", responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503)
)
async def add(
    team_id: TeamId,
    body: MemberIn,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
) -> MemberOut:
    """Add an account by e-mail (or change its role); team admins only."""
    actor = await actor_of(session, user_id, settings)
    try:
        member = await add_member(
            session,
            actor,
            team_id,
            email=body.email,
            role=body.role,
            max_teams=settings.teams_max_per_user,
        )
    except NotFoundError:
        raise not_found("No such team, or no account with this e-mail.") from None
    except ForbiddenError as exc:
        raise forbidden(exc) from None
    except LimitReachedError as exc:
        raise limit_reached(exc) from None
    return MemberOut(user_id=member.user_id, email=body.email.lower(), role=member.role)


@router.delete(
    "/{team_id}/members/{member_id}",
    status_code=204,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def remove(
    team_id: TeamId,
    member_id: UserId,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
) -> None:
    """Remove a member (or leave); the last admin cannot."""
    actor = await actor_of(session, user_id, settings)
    try:
        await remove_member(session, actor, team_id, member_id)
    except NotFoundError:
        raise not_found("No such team or member.") from None
    except ForbiddenError as exc:
        raise forbidden(exc) from None


@router.put("/{team_id}/budget", responses=error_responses(400, 401, 403, 404, 413, 422, 503))
async def set_budget(
    *,
    team_id: TeamId,
    body: BudgetSetIn,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
) -> TeamOut:
    """Set or remove the budget over all the team's keys (administrators only)."""
    actor = await actor_of(session, user_id, settings)
    try:
        team, keys = await set_team_budget(
            session,
            actor,
            team_id,
            **budget_columns(body.budget),
        )
    except NotFoundError:
        raise not_found("No such team.") from None
    except ForbiddenError as exc:
        raise forbidden(exc) from None
    await asyncio.gather(*(directory.publish(key, team) for key in keys))
    return TeamOut(
        id=team.id,
        name=team.name,
        created_at=team.created_at,
        budget=await _budget(directory, team),
    )
