"""``/api/dms``: direct messages — one private room per pair of people."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from chorus_api.deps import CurrentUserId, ReadSessionDep, RoomsDep, SessionDep
from chorus_api.domain.dms import DmView, list_dms, open_dm
from chorus_api.domain.pages import DEFAULT_PAGE_SIZE
from chorus_api.routes.errors import room_errors
from chorus_api.routes.openapi import error_responses
from chorus_api.routes.rooms import room_out
from chorus_api.schemas.pages import CursorQuery, LimitQuery, PageOut
from chorus_api.schemas.rooms import DmOpenIn, DmOut, ProfileOut, RoomOut

__all__ = ["router"]

router = APIRouter(prefix="/api/dms", tags=["rooms"])


def _out(view: DmView) -> DmOut:
    peer = None
    if view.peer_id is not None and view.peer_name is not None:
        peer = ProfileOut(id=view.peer_id, display_name=view.peer_name)
    return DmOut(
        room=view.room.name,
        peer=peer,
        unread=view.unread,
        last_message_at=view.last_message_at,
    )


@router.post(
    "",
    status_code=201,
    responses={
        200: {"model": RoomOut, "description": "The conversation existed already."},
        **error_responses(
            400,
            401,
            404,
            409,
            413,
            422,
            429,
            503,
            s409="private_rooms_unavailable",
            s429="too_many_conversations",
        ),
    },
)
async def open_conversation(
    body: DmOpenIn, response: Response, user_id: CurrentUserId, session: SessionDep, rooms: RoomsDep
) -> RoomOut:
    """The direct-message room with someone: 201 when this made it, 200 when it existed.

    Private, exactly the two of you, named ``dm.<smaller id>.<larger id>``; join it at
    ``/ws/<name>``. Starting new conversations is limited (``DM_OPENS_PER_HOUR``, 429).
    """
    if body.user_id == user_id:
        raise HTTPException(
            422, {"code": "dm_self", "message": "A conversation needs somebody else."}
        )
    with room_errors():
        view, created = await open_dm(session, rooms, user_id=user_id, peer_id=body.user_id)
    if not created:
        response.status_code = 200
    return room_out(view)


@router.get("", responses=error_responses(401, 422, 503, s422="invalid_cursor"))
async def conversations(
    user_id: CurrentUserId,
    session: ReadSessionDep,
    limit: LimitQuery = DEFAULT_PAGE_SIZE,
    cursor: CursorQuery = None,
) -> PageOut[DmOut]:
    """Your conversations, newest first, with the other person and your unread count."""
    with room_errors():
        page = await list_dms(session, user_id=user_id, limit=limit, cursor=cursor)
    return PageOut[DmOut](items=[_out(v) for v in page.items], next_cursor=page.next_cursor)
