"""Virtual keys: create, list, read, rotate, revoke — and who may do which.

A key belongs to a user or to a team. Its owner manages a user's key; a team's keys are
managed by the team's admins and seen by its members. An administrator (an account whose
e-mail is in ``ADMIN_EMAILS``) manages every key. The secret is returned once, by
:func:`create_key` and :func:`rotate_key`; only its SHA-256 is stored. Rotation issues a
new secret and keeps the old one valid for a grace period; revocation ends both at once.
Each change is committed here and copied to Redis for the gateways by the caller
(:class:`~chorus_api.domain.key_directory.KeyDirectory`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.errors import ForbiddenError, LimitReachedError, NotFoundError
from chorus_common.virtual_keys import new_secret, secret_digest
from chorus_schema.models import Team, TeamMember, User, VirtualKey

__all__ = [
    "Actor",
    "KeySpec",
    "create_key",
    "get_key",
    "list_keys",
    "load_actor",
    "revoke_key",
    "rotate_key",
]

_PREFIX_SHOWN = 14


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking: a user, and whether they administer everything."""

    user_id: int
    is_admin: bool


async def load_actor(session: AsyncSession, user_id: int, admins: frozenset[str]) -> Actor:
    """The actor behind a token (``NotFoundError`` if the account is gone)."""
    email = await session.scalar(select(User.email).where(User.id == user_id))
    if email is None:
        raise NotFoundError
    return Actor(user_id, email.lower() in admins)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What a new key allows."""

    name: str
    team_id: int | None = None
    models: list[str] | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_streams: int | None = None
    budget_micros: int | None = None
    budget_period: str | None = None
    expires_at: datetime | None = None


async def _role(session: AsyncSession, team_id: int, user_id: int) -> str | None:
    return await session.scalar(
        select(TeamMember.role).where(TeamMember.team_id == team_id, TeamMember.user_id == user_id)
    )


async def _may_manage_team(session: AsyncSession, actor: Actor, team_id: int) -> bool:
    return actor.is_admin or await _role(session, team_id, actor.user_id) == "admin"


async def create_key(
    session: AsyncSession, actor: Actor, spec: KeySpec, *, max_per_owner: int
) -> tuple[VirtualKey, Team | None, str]:
    """A new key for the actor (or for ``spec.team_id``); returns it, its team, the secret.

    ``ForbiddenError`` when the actor may not create keys for that team (``NotFoundError``
    if they cannot even see it), ``LimitReachedError`` at ``max_per_owner`` live keys.
    """
    team: Team | None = None
    if spec.team_id is not None:
        team = await session.get(Team, spec.team_id)
        if team is None:
            raise NotFoundError
        role = await _role(session, team.id, actor.user_id)
        if not actor.is_admin and role is None:
            raise NotFoundError
        if not actor.is_admin and role != "admin":
            raise ForbiddenError("only the team's admins create its keys")
        owner_filter = VirtualKey.team_id == team.id
        # Serialise creations per owner, so the count below cannot be raced.
        await session.execute(select(Team.id).where(Team.id == team.id).with_for_update())
    else:
        owner_filter = VirtualKey.user_id == actor.user_id
        await session.execute(select(User.id).where(User.id == actor.user_id).with_for_update())
    live = await session.scalar(
        select(func.count())
        .select_from(VirtualKey)
        .where(owner_filter, VirtualKey.revoked_at.is_(None))
    )
    if (live or 0) >= max_per_owner:
        raise LimitReachedError(f"at most {max_per_owner} live keys per owner")
    secret = new_secret()
    key = VirtualKey(
        name=spec.name,
        digest=secret_digest(secret),
        prefix=secret[:_PREFIX_SHOWN],
        user_id=None if team is not None else actor.user_id,
        team_id=team.id if team is not None else None,
        created_by=actor.user_id,
        models=spec.models,
        requests_per_minute=spec.requests_per_minute,
        tokens_per_minute=spec.tokens_per_minute,
        concurrent_streams=spec.concurrent_streams,
        budget_micros=spec.budget_micros,
        budget_period=spec.budget_period,
        expires_at=spec.expires_at,
    )
    session.add(key)
    await session.commit()
    return key, team, secret


async def get_key(
    session: AsyncSession, actor: Actor, key_id: int, *, manage: bool = False
) -> tuple[VirtualKey, Team | None]:
    """A key the actor may see (``manage``: may change); ``NotFoundError`` otherwise.

    A member of a team who is not its admin sees its keys but may not change them
    (``ForbiddenError``).
    """
    key = await session.get(VirtualKey, key_id, with_for_update=manage)
    if key is None:
        raise NotFoundError
    team = await session.get(Team, key.team_id) if key.team_id is not None else None
    if actor.is_admin:
        return key, team
    if key.user_id is not None:
        if key.user_id != actor.user_id:
            raise NotFoundError
        return key, team
    role = await _role(session, key.team_id, actor.user_id) if key.team_id else None
    if role is None:
        raise NotFoundError
    if manage and role != "admin":
        raise ForbiddenError("only the team's admins change its keys")
    return key, team


async def list_keys(
    session: AsyncSession,
    actor: Actor,
    *,
    team_id: int | None = None,
    everyone: bool = False,
    include_revoked: bool = False,
    limit: int = 200,
) -> list[tuple[VirtualKey, Team | None]]:
    """The actor's keys and their teams' (``team_id``: that team's; ``everyone``: every
    key, administrators only), newest first."""
    statement = select(VirtualKey, Team).outerjoin(Team, Team.id == VirtualKey.team_id)
    if team_id is not None:
        if not actor.is_admin and await _role(session, team_id, actor.user_id) is None:
            raise NotFoundError
        statement = statement.where(VirtualKey.team_id == team_id)
    elif everyone:
        if not actor.is_admin:
            raise ForbiddenError("only administrators list every key")
    else:
        teams = select(TeamMember.team_id).where(TeamMember.user_id == actor.user_id)
        statement = statement.where(
            or_(VirtualKey.user_id == actor.user_id, VirtualKey.team_id.in_(teams))
        )
    if not include_revoked:
        statement = statement.where(VirtualKey.revoked_at.is_(None))
    statement = statement.order_by(VirtualKey.id.desc()).limit(limit)
    return [(key, team) for key, team in (await session.execute(statement)).all()]


async def rotate_key(
    session: AsyncSession, actor: Actor, key_id: int, *, grace: timedelta
) -> tuple[VirtualKey, Team | None, str, list[str]]:
    """A new secret for the key; the current one stays valid for ``grace`` (0: ends now).

    Returns the key, its team, the new secret and the digests no longer valid at all (a
    secret still in the grace of an earlier rotation), which Redis must forget.
    """
    key, team = await get_key(session, actor, key_id, manage=True)
    if key.revoked_at is not None:
        raise NotFoundError
    now = datetime.now(UTC)
    secret = new_secret()
    retired = [key.previous_digest] if key.previous_digest is not None else []
    # With no grace the previous secret is simply already past its end.
    key.previous_digest = key.digest
    key.previous_valid_until = now + grace
    key.digest = secret_digest(secret)
    key.prefix = secret[:_PREFIX_SHOWN]
    key.rotated_at = now
    await session.commit()
    return key, team, secret, retired


async def revoke_key(
    session: AsyncSession, actor: Actor, key_id: int
) -> tuple[VirtualKey, Team | None]:
    """End the key (and a rotated-out secret still in its grace period) now."""
    key, team = await get_key(session, actor, key_id, manage=True)
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        await session.commit()
    return key, team
