"""``/api/rooms``: rooms people own, the lists of them, and a room's stored history.

Answers that matter to outsiders (the README explains the choice): a private room you are
not in, a deleted room and a name nobody registered are all **404** on the room resource
routes; a room's *content* — ``/messages`` — is **403** ``forbidden`` when the access rule
refuses you (any name can be read as a room, so the refusal tells no more than a 409 on
creating the name would). A member whose role does not allow a change gets 403 too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response

from chorus_api.deps import CurrentUserId, ReadSessionDep, RoomsDep, SessionDep
from chorus_api.domain.errors import InvalidCursorError
from chorus_api.domain.history import message_envelope, room_history
from chorus_api.domain.members import join_room, mark_read
from chorus_api.domain.pages import DEFAULT_PAGE_SIZE
from chorus_api.domain.rooms import (
    RoomView,
    create_room,
    delete_room,
    get_room,
    my_rooms,
    public_rooms,
    refuse,
    update_room,
)
from chorus_api.routes.errors import room_errors
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.pages import CursorQuery, LimitQuery, PageOut
from chorus_api.schemas.rooms import (
    ROOM_PATTERN,
    STREAM_ID_PATTERN,
    MessageOut,
    ProfileOut,
    ReadIn,
    RoomCreateIn,
    RoomOut,
    RoomUpdateIn,
)

__all__ = ["RoomPath", "room_out", "router"]

router = APIRouter(prefix="/api/rooms", tags=["rooms"])

RoomPath = Annotated[str, Path(pattern=ROOM_PATTERN, description="Room name, as in /ws/{room}.")]


def room_out(view: RoomView) -> RoomOut:
    """The response body of a room as one user sees it."""
    room = view.room
    owner = None
    if room.owner_id is not None and view.owner_name is not None:
        owner = ProfileOut(id=room.owner_id, display_name=view.owner_name)
    return RoomOut(
        name=room.name,
        kind=room.kind,
        visibility=room.visibility,
        topic=room.topic,
        owner=owner,
        role=view.role,
        member_count=view.member_count,
        created_at=room.created_at,
    )


@router.post(
    "",
    status_code=201,
    responses=error_responses(400, 401, 409, 413, 422, 503, s409="room_name_taken"),
)
async def create(
    body: RoomCreateIn, user_id: CurrentUserId, session: SessionDep, rooms: RoomsDep
) -> RoomOut:
    """Register a room with you as owner (``private``: only members may enter).

    409 ``room_name_taken`` when the name is registered or already used as a room by name
    (it has history): nobody takes over a room others talk in. 409 ``limit_reached`` past
    ``ROOMS_MAX_OWNED`` rooms. Names starting with ``dm.`` are direct messages (422).
    """
    with room_errors():
        view = await create_room(
            session,
            rooms,
            owner_id=user_id,
            name=body.name,
            visibility=body.visibility,
            topic=body.topic,
        )
    return room_out(view)


@router.get("", responses=error_responses(401, 422, 503, s422="invalid_cursor"))
async def list_rooms(  # noqa: PLR0917 - FastAPI parameters
    user_id: CurrentUserId,
    session: ReadSessionDep,
    scope: Annotated[
        Literal["member", "public"],
        Query(description="`member`: rooms you are in (newest first); `public`: the directory."),
    ] = "member",
    kind: Annotated[
        Literal["room", "dm"] | None,
        Query(description="With scope=member: only rooms or only direct messages."),
    ] = None,
    prefix: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
            description="With scope=public: names starting with this (any case).",
        ),
    ] = None,
    limit: LimitQuery = DEFAULT_PAGE_SIZE,
    cursor: CursorQuery = None,
) -> PageOut[RoomOut]:
    """Your rooms, or the public rooms (alphabetically, searchable by prefix)."""
    with room_errors():
        if scope == "public":
            page = await public_rooms(
                session, user_id=user_id, prefix=prefix, limit=limit, cursor=cursor
            )
        else:
            page = await my_rooms(session, user_id=user_id, kind=kind, limit=limit, cursor=cursor)
    return PageOut[RoomOut](items=[room_out(v) for v in page.items], next_cursor=page.next_cursor)


@router.get("/{room}", responses=error_responses(401, 404, 422, 503))
async def read(room: RoomPath, user_id: CurrentUserId, session: ReadSessionDep) -> RoomOut:
    """A registered room that is public or that you are in (else 404)."""
    with room_errors():
        return room_out(await get_room(session, name=room, user_id=user_id))


@router.patch(
    "/{room}", responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503, s403="forbidden")
)
async def update(
    room: RoomPath,
    body: RoomUpdateIn,
    user_id: CurrentUserId,
    session: SessionDep,
    rooms: RoomsDep,
) -> RoomOut:
    """Change the visibility or topic (owner or admin).

    Made private, everyone who is not a member loses access at once — their open sockets
    on every replica are dropped before anything said after the change reaches them.
    """
    with room_errors():
        view = await update_room(
            session,
            rooms,
            name=room,
            user_id=user_id,
            visibility=body.visibility,
            topic=body.topic,
            clear_topic="topic" in body.model_fields_set and body.topic is None,
        )
    return room_out(view)


@router.delete(
    "/{room}",
    status_code=204,
    responses=error_responses(401, 403, 404, 409, 422, 503, s403="forbidden"),
)
async def delete(
    room: RoomPath, user_id: CurrentUserId, session: SessionDep, rooms: RoomsDep
) -> Response:
    """Delete the room (owner only): everyone loses access at once, its history is wiped,
    and the name stays taken."""
    with room_errors():
        await delete_room(session, rooms, name=room, user_id=user_id)
    return Response(status_code=204)


@router.post("/{room}/join", responses=error_responses(401, 404, 409, 422, 503))
async def join(
    room: RoomPath, user_id: CurrentUserId, session: SessionDep, rooms: RoomsDep
) -> RoomOut:
    """Become a member of a public room (private rooms take an invitation)."""
    with room_errors():
        return room_out(await join_room(session, rooms, name=room, user_id=user_id))


@router.post(
    "/{room}/read", status_code=204, responses=error_responses(400, 401, 404, 413, 422, 503)
)
async def read_up_to(
    room: RoomPath, body: ReadIn, user_id: CurrentUserId, session: SessionDep
) -> Response:
    """Mark the room read up to a stream id (members; unread counts start after it)."""
    with room_errors():
        await mark_read(session, name=room, user_id=user_id, up_to=body.id)
    return Response(status_code=204)


@router.get(
    "/{room}/messages",
    responses=error_responses(401, 403, 422, 503, s403="forbidden", s422="invalid_cursor"),
)
async def messages(  # noqa: PLR0917 - FastAPI parameters
    room: RoomPath,
    user_id: CurrentUserId,
    session: ReadSessionDep,
    rooms: RoomsDep,
    before: Annotated[
        str | None,
        Query(
            pattern=STREAM_ID_PATTERN,
            description="Only messages older than this stream id (e.g. the oldest one shown).",
        ),
    ] = None,
    limit: LimitQuery = DEFAULT_PAGE_SIZE,
    cursor: CursorQuery = None,
) -> PageOut[MessageOut]:
    """The room's stored messages, newest first; ``next_cursor`` goes further back.

    Items are the envelopes realtime delivers live (``message`` and ``ai.done`` events).
    Messages reach this history when the worker persists them, a moment after they are
    sent; realtime's own replay covers that moment. Who may read is the rule realtime
    applies at the door (``chorus_common.rooms``): 403 ``forbidden`` for a private room you
    are not in (or a deleted one), 503 while the rule cannot be checked.
    """
    access = await rooms.directory.check(room, str(user_id))
    if not access.allowed:
        raise refuse(
            "not_member",
            HTTPException(403, {"code": "forbidden", "message": "You may not read this room."}),
        )
    try:
        page = await room_history(session, room=room, limit=limit, before=before, cursor=cursor)
    except InvalidCursorError as exc:
        raise HTTPException(422, {"code": "invalid_cursor", "message": str(exc)}) from None
    return PageOut[MessageOut](
        items=[MessageOut.model_validate(message_envelope(m)) for m in page.items],
        next_cursor=page.next_cursor,
    )
