"""Teams: a name, members (``admin`` or ``member``) and optionally one spend budget.

Any user may create a team and becomes its admin; a team's admins add and remove members
and create its keys. The team budget caps every call made with any of the team's keys
together, so only an administrator (``ADMIN_EMAILS``) sets it — a team cannot raise its
own cap. How many teams one user belongs to is bounded (``TEAMS_MAX_PER_USER``), as is a
team's size.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.errors import (
    DuplicateNameError,
    ForbiddenError,
    LimitReachedError,
    NotFoundError,
)
from chorus_api.domain.keys import Actor
from chorus_schema.models import Team, TeamMember, User, VirtualKey

__all__ = [
    "MAX_MEMBERS",
    "add_member",
    "create_team",
    "get_team",
    "list_teams",
    "remove_member",
    "set_team_budget",
]

#: Members of one team.
MAX_MEMBERS = 1000


async def _check_room(session: AsyncSession, user_id: int, max_teams: int) -> None:
    count = await session.scalar(
        select(func.count()).select_from(TeamMember).where(TeamMember.user_id == user_id)
    )
    if (count or 0) >= max_teams:
        raise LimitReachedError(f"a user belongs to at most {max_teams} teams")


async def create_team(session: AsyncSession, actor: Actor, *, name: str, max_teams: int) -> Team:
    """A new team with the actor as its admin."""
    await session.execute(select(User.id).where(User.id == actor.user_id).with_for_update())
    await _check_room(session, actor.user_id, max_teams)
    team = Team(name=name)
    session.add(team)
    try:
        await session.flush()
    except IntegrityError:
        raise DuplicateNameError(name) from None
    session.add(TeamMember(team_id=team.id, user_id=actor.user_id, role="admin"))
    await session.commit()
    return team


async def get_team(
    session: AsyncSession, actor: Actor, team_id: int, *, manage: bool = False
) -> tuple[Team, list[tuple[TeamMember, str]]]:
    """A team the actor belongs to (any team for an administrator) and its members with
    their e-mails; ``manage`` requires being one of its admins."""
    team = await session.get(Team, team_id, with_for_update=manage)
    if team is None:
        raise NotFoundError
    rows = (
        await session.execute(
            select(TeamMember, User.email)
            .join(User, User.id == TeamMember.user_id)
            .where(TeamMember.team_id == team_id)
            .order_by(TeamMember.user_id)
        )
    ).all()
    members = [(member, email) for member, email in rows]
    role = next((m.role for m, _ in members if m.user_id == actor.user_id), None)
    if not actor.is_admin:
        if role is None:
            raise NotFoundError
        if manage and role != "admin":
            raise ForbiddenError("only the team's admins manage it")
    return team, members


async def list_teams(session: AsyncSession, actor: Actor, *, everyone: bool = False) -> list[Team]:
    """The actor's teams (every team for an administrator asking for ``everyone``)."""
    statement = select(Team).order_by(Team.id)
    if everyone:
        if not actor.is_admin:
            raise ForbiddenError("only administrators list every team")
    else:
        mine = select(TeamMember.team_id).where(TeamMember.user_id == actor.user_id)
        statement = statement.where(Team.id.in_(mine))
    return list((await session.scalars(statement.limit(1000))).all())


async def add_member(
    session: AsyncSession, actor: Actor, team_id: int, *, email: str, role: str, max_teams: int
) -> TeamMember:
    """Add (or change the role of) the account with ``email``; ``NotFoundError`` if none."""
    team, members = await get_team(session, actor, team_id, manage=True)
    user_id = await session.scalar(select(User.id).where(User.email == email.lower()))
    if user_id is None:
        raise NotFoundError
    existing = next((m for m, _ in members if m.user_id == user_id), None)
    if existing is not None:
        existing.role = role
        await session.commit()
        return existing
    if len(members) >= MAX_MEMBERS:
        raise LimitReachedError(f"a team has at most {MAX_MEMBERS} members")
    await _check_room(session, user_id, max_teams)
    member = TeamMember(team_id=team.id, user_id=user_id, role=role)
    session.add(member)
    await session.commit()
    return member


async def remove_member(session: AsyncSession, actor: Actor, team_id: int, user_id: int) -> None:
    """Remove a member (members may leave; admins remove anyone). The last admin stays."""
    _team, members = await get_team(session, actor, team_id)
    me = next((m for m, _ in members if m.user_id == actor.user_id), None)
    if not actor.is_admin and user_id != actor.user_id and (me is None or me.role != "admin"):
        raise ForbiddenError("only the team's admins remove other members")
    target = next((m for m, _ in members if m.user_id == user_id), None)
    if target is None:
        raise NotFoundError
    admins = [m for m, _ in members if m.role == "admin"]
    if target.role == "admin" and len(admins) == 1:
        raise ForbiddenError("a team keeps at least one admin")
    await session.execute(
        delete(TeamMember).where(TeamMember.team_id == team_id, TeamMember.user_id == user_id)
    )
    await session.commit()


async def set_team_budget(
    session: AsyncSession,
    actor: Actor,
    team_id: int,
    *,
    budget_micros: int | None,
    budget_period: str | None,
) -> tuple[Team, list[VirtualKey]]:
    """Set (or clear) the team's budget; returns the team and its live keys to re-copy."""
    if not actor.is_admin:
        raise ForbiddenError("only administrators set a team's budget")
    team = await session.get(Team, team_id, with_for_update=True)
    if team is None:
        raise NotFoundError
    team.budget_micros = budget_micros
    team.budget_period = budget_period
    await session.flush()
    keys = await session.scalars(
        select(VirtualKey).where(VirtualKey.team_id == team_id, VirtualKey.revoked_at.is_(None))
    )
    live = list(keys.all())
    await session.commit()
    return team, live
