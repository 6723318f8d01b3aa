"""``/api/keys``: virtual keys for the LLM gateway — create, list, read, rotate, revoke.

The secret is in the answer to a creation or a rotation, and nowhere else, ever. Every
change is copied to Redis after its commit, where each gateway replica picks it up at
once (a revoked key is refused everywhere within a second).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from chorus_api.deps import CurrentUserId, KeyDirectoryDep, SessionDep, SettingsDep
from chorus_api.domain.errors import ForbiddenError, LimitReachedError, NotFoundError
from chorus_api.domain.key_directory import KeyDirectory
from chorus_api.domain.keys import (
    KeySpec,
    create_key,
    get_key,
    list_keys,
    revoke_key,
    rotate_key,
)
from chorus_api.routes.actors import actor_of, forbidden, limit_reached, not_found
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.fields import BIGINT_MAX, Id
from chorus_api.schemas.keys import (
    BudgetOut,
    KeyCreatedOut,
    KeyCreateIn,
    KeyOut,
    RotateIn,
    budget_columns,
)
from chorus_schema.models import Team, VirtualKey

__all__ = ["router"]

router = APIRouter(prefix="/api/keys", tags=["keys"])

KeyId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


async def _out(directory: KeyDirectory, rows: list[tuple[VirtualKey, Team | None]]) -> list[KeyOut]:
    spent = await directory.spend(rows)
    out = []
    for (key, _team), used in zip(rows, spent, strict=True):
        item = KeyOut.model_validate(key)
        if key.budget_micros is not None and key.budget_period is not None:
            item.budget = BudgetOut(
                amount_micros=key.budget_micros,
                period=key.budget_period,
                spent_micros=used,
            )
        out.append(item)
    return out


@router.post("", status_code=201, responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))
async def create(
    body: KeyCreateIn,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
) -> KeyCreatedOut:
    """A new key; its secret is in this answer only — copy it now."""
    actor = await actor_of(session, user_id, settings)
    spec = KeySpec(
        name=body.name,
        team_id=body.team_id,
        models=body.models,
        requests_per_minute=body.requests_per_minute,
        tokens_per_minute=body.tokens_per_minute,
        concurrent_streams=body.concurrent_streams,
        **budget_columns(body.budget),
        expires_at=body.expires_at,
    )
    try:
        key, team, secret = await create_key(
            session, actor, spec, max_per_owner=settings.keys_max_per_owner
        )
    except NotFoundError:
        raise not_found("No such team.") from None
    except ForbiddenError as exc:
        raise forbidden(exc) from None
    except LimitReachedError as exc:
        raise limit_reached(exc) from None
    await directory.publish(key, team)
    (out,) = await _out(directory, [(key, team)])
    return KeyCreatedOut(key=out, secret=secret)


@router.get("", responses=error_responses(401, 403, 404, 422, 503))
async def list_(
    *,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
    team_id: Annotated[Id | None, Query(description="Only this team's keys.")] = None,
    all_keys: Annotated[
        bool, Query(alias="all", description="Every key (administrators only).")
    ] = False,
    revoked: Annotated[bool, Query(description="Include revoked keys.")] = False,
) -> list[KeyOut]:
    """Your keys and your teams' keys, newest first (at most 200), with their spend."""
    actor = await actor_of(session, user_id, settings)
    try:
        rows = await list_keys(
            session, actor, team_id=team_id, everyone=all_keys, include_revoked=revoked
        )
    except NotFoundError:
        raise not_found("No such team.") from None
    except ForbiddenError as exc:
        raise forbidden(exc) from None
    return await _out(directory, rows)


@router.get("/{key_id}", responses=error_responses(401, 404, 422, 503))
async def read(
    key_id: KeyId,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
) -> KeyOut:
    """One key, with its spend in the current period."""
    actor = await actor_of(session, user_id, settings)
    try:
        row = await get_key(session, actor, key_id)
    except NotFoundError:
        raise not_found("No such key.") from None
    (out,) = await _out(directory, [row])
    return out


@router.post("/{key_id}/rotate", responses=error_responses(400, 401, 403, 404, 413, 422, 503))
async def rotate(
    *,
    key_id: KeyId,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
    body: RotateIn | None = None,
) -> KeyCreatedOut:
    """A new secret (in this answer only); the old one keeps working for ``grace_seconds``."""
    actor = await actor_of(session, user_id, settings)
    grace = timedelta(seconds=(body or RotateIn()).grace_seconds)
    try:
        key, team, secret, retired = await rotate_key(session, actor, key_id, grace=grace)
    except NotFoundError:
        raise not_found("No such key.") from None
    except ForbiddenError as exc:
        raise forbidden(exc) from None
    await directory.publish(key, team, retired=retired)
    (out,) = await _out(directory, [(key, team)])
    return KeyCreatedOut(key=out, secret=secret)


@router.delete("/{key_id}", status_code=204, responses=error_responses(401, 403, 404, 422, 503))
async def revoke(
    key_id: KeyId,
    user_id: CurrentUserId,
    session: SessionDep,
    settings: SettingsDep,
    directory: KeyDirectoryDep,
) -> None:
    """Revoke the key now: every gateway refuses it within a second. Its usage stays."""
    actor = await actor_of(session, user_id, settings)
    try:
        key, team = await revoke_key(session, actor, key_id)
    except NotFoundError:
        raise not_found("No such key.") from None
    except ForbiddenError as exc:
        raise forbidden(exc) from None
    if not await directory.publish(key, team):
        # Committed, but the gateways may not know yet: say so rather than pretend.
        raise HTTPException(
            503,
            {
                "code": "service_unavailable",
                "message": "The key is revoked, but the gateways could not be told yet; "
                "they will be within KEY_RESYNC_SECONDS. Retry to make sure.",
            },
            headers={"Retry-After": "1"},
        )
