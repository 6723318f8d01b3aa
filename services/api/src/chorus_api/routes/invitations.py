"""Invitations: ``/api/rooms/{room}/invitations`` (the room's admins) and
``/api/invitations`` (yours: accept or decline)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from chorus_api.deps import CurrentUserId, ReadSessionDep, RoomsDep, SessionDep
from chorus_api.domain.invitations import (
    InvitationView,
    accept_invitation,
    decline_invitation,
    invite,
    my_invitations,
    revoke_invitation,
    room_invitations,
)
from chorus_api.domain.pages import DEFAULT_PAGE_SIZE
from chorus_api.domain.rooms import get_room
from chorus_api.routes.errors import room_errors
from chorus_api.routes.openapi import error_responses
from chorus_api.routes.rooms import RoomPath, room_out
from chorus_api.schemas.fields import BIGINT_MAX
from chorus_api.schemas.pages import CursorQuery, LimitQuery, PageOut
from chorus_api.schemas.rooms import InvitationIn, InvitationOut, ProfileOut, RoomOut

__all__ = ["router"]

router = APIRouter(tags=["rooms"])

InvitationId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The invitation's id.")]


def _out(view: InvitationView) -> InvitationOut:
    user = None
    if view.user_id is not None and view.user_name is not None:
        user = ProfileOut(id=view.user_id, display_name=view.user_name)
    return InvitationOut(
        id=view.id,
        room=view.room,
        visibility=view.visibility,
        role=view.role,
        email=view.email,
        user=user,
        inviter=view.inviter_name,
        created_at=view.created_at,
    )


@router.post(
    "/api/rooms/{room}/invitations",
    status_code=201,
    responses={
        200: {"model": InvitationOut, "description": "The pending invitation there was already."},
        **error_responses(
            400,
            401,
            403,
            404,
            409,
            413,
            422,
            429,
            503,
            s403="forbidden",
            s429="too_many_invitations",
        ),
    },
)
async def create(  # noqa: PLR0917 - FastAPI parameters
    room: RoomPath,
    body: InvitationIn,
    response: Response,
    user_id: CurrentUserId,
    session: SessionDep,
    rooms: RoomsDep,
) -> InvitationOut:
    """Invite an account or an e-mail address (owner or admin; ``admin`` only by the owner).

    The invitee accepts or declines. An address without an account keeps its invitation
    until someone signs up with it; the answer is the same whether or not it has one.
    Each invitation mails its address once, through the worker (at most
    ``ROOM_INVITATION_MAILS_PER_ADDRESS_PER_DAY`` a day per address). 200 with the pending
    invitation when there is one already; 429 ``too_many_invitations`` past
    ``ROOM_INVITATIONS_PER_HOUR``; 409 ``already_member`` (by account), ``limit_reached``.
    """
    with room_errors():
        view, created = await invite(
            session,
            rooms,
            name=room,
            inviter_id=user_id,
            email=str(body.email) if body.email is not None else None,
            user_id=body.user_id,
            role=body.role,
        )
    if not created:
        response.status_code = 200
    return _out(view)


@router.get(
    "/api/rooms/{room}/invitations",
    responses=error_responses(401, 403, 404, 422, 503, s403="forbidden"),
)
async def pending(
    room: RoomPath,
    user_id: CurrentUserId,
    session: ReadSessionDep,
    limit: LimitQuery = DEFAULT_PAGE_SIZE,
    cursor: CursorQuery = None,
) -> PageOut[InvitationOut]:
    """The room's pending invitations, newest first (owner and admins)."""
    with room_errors():
        page = await room_invitations(
            session, name=room, user_id=user_id, limit=limit, cursor=cursor
        )
    return PageOut[InvitationOut](items=[_out(v) for v in page.items], next_cursor=page.next_cursor)


@router.delete(
    "/api/rooms/{room}/invitations/{invitation_id}",
    status_code=204,
    responses=error_responses(401, 403, 404, 422, 503, s403="forbidden"),
)
async def withdraw(
    room: RoomPath, invitation_id: InvitationId, user_id: CurrentUserId, session: SessionDep
) -> Response:
    """Withdraw a pending invitation (owner and admins)."""
    with room_errors():
        await revoke_invitation(session, name=room, user_id=user_id, invitation_id=invitation_id)
    return Response(status_code=204)


@router.get("/api/invitations", responses=error_responses(401, 503))
async def mine(user_id: CurrentUserId, session: ReadSessionDep) -> list[InvitationOut]:
    """Your pending invitations (to your account or your address), newest first (≤ 100)."""
    return [_out(v) for v in await my_invitations(session, user_id=user_id)]


@router.post(
    "/api/invitations/{invitation_id}/accept", responses=error_responses(401, 404, 409, 422, 503)
)
async def accept(
    invitation_id: InvitationId, user_id: CurrentUserId, session: SessionDep, rooms: RoomsDep
) -> RoomOut:
    """Accept: you are a member with the role offered, and may join the room at once."""
    with room_errors():
        room = await accept_invitation(session, rooms, invitation_id=invitation_id, user_id=user_id)
        return room_out(await get_room(session, name=room.name, user_id=user_id))


@router.delete(
    "/api/invitations/{invitation_id}",
    status_code=204,
    responses=error_responses(401, 404, 422, 503),
)
async def decline(
    invitation_id: InvitationId, user_id: CurrentUserId, session: SessionDep
) -> Response:
    """Decline an invitation."""
    with room_errors():
        await decline_invitation(session, invitation_id=invitation_id, user_id=user_id)
    return Response(status_code=204)
