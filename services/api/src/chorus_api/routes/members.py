"""``/api/rooms/{room}/members``: who is in a room, roles, removing someone, leaving."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from chorus_api.deps import CurrentUserId, ReadSessionDep, RoomsDep, SessionDep
from chorus_api.domain.members import (
    MemberView,
    change_role,
    leave_room,
    list_members,
    remove_member,
)
from chorus_api.domain.pages import DEFAULT_PAGE_SIZE
from chorus_api.routes.errors import room_errors
from chorus_api.routes.openapi import error_responses
from chorus_api.routes.rooms import RoomPath
from chorus_api.schemas.fields import BIGINT_MAX
from chorus_api.schemas.pages import CursorQuery, LimitQuery, PageOut
from chorus_api.schemas.rooms import MemberOut, RoleIn

__all__ = ["router"]

router = APIRouter(prefix="/api/rooms/{room}/members", tags=["rooms"])

MemberId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The member's user id.")]


def _out(member: MemberView) -> MemberOut:
    return MemberOut(
        user_id=member.user_id,
        display_name=member.display_name,
        role=member.role,
        joined_at=member.joined_at,
    )


@router.get("", responses=error_responses(401, 404, 422, 503, s422="invalid_cursor"))
async def members(
    room: RoomPath,
    user_id: CurrentUserId,
    session: ReadSessionDep,
    limit: LimitQuery = DEFAULT_PAGE_SIZE,
    cursor: CursorQuery = None,
) -> PageOut[MemberOut]:
    """Members with their display names and roles (a private room's: members only, else 404)."""
    with room_errors():
        page = await list_members(session, name=room, user_id=user_id, limit=limit, cursor=cursor)
    return PageOut[MemberOut](items=[_out(m) for m in page.items], next_cursor=page.next_cursor)


@router.patch(
    "/{member_id}",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503, s403="forbidden"),
)
async def set_role(  # noqa: PLR0917 - FastAPI parameters
    room: RoomPath,
    member_id: MemberId,
    body: RoleIn,
    user_id: CurrentUserId,
    session: SessionDep,
    rooms: RoomsDep,
) -> MemberOut:
    """Change a member's role (the owner only); ``owner`` hands the room over."""
    with room_errors():
        member = await change_role(
            session, rooms, name=room, actor_id=user_id, user_id=member_id, role=body.role
        )
    return _out(member)


@router.delete(
    "/{member_id}",
    status_code=204,
    responses=error_responses(401, 403, 404, 409, 422, 503, s403="forbidden"),
)
async def remove(
    room: RoomPath,
    member_id: MemberId,
    user_id: CurrentUserId,
    session: SessionDep,
    rooms: RoomsDep,
) -> Response:
    """Remove a member (owner: anyone else; admin: members), or leave: your own id.

    In a private room they lose access at once: their open sockets on every replica are
    dropped before anything said after the removal reaches them. The owner cannot leave
    (409 ``owner_cannot_leave``): hand the room over, or delete it.
    """
    with room_errors():
        if member_id == user_id:
            await leave_room(session, rooms, name=room, user_id=user_id)
        else:
            await remove_member(session, rooms, name=room, actor_id=user_id, user_id=member_id)
    return Response(status_code=204)
