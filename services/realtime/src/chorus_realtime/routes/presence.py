"""``GET /rooms/{room}/presence``: who is in a room right now, across every replica.

Only for those who may enter the room (the rule of ``chorus_common.rooms``): 403
``forbidden`` otherwise, 503 while it cannot be checked.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from chorus_common.errors import UNAVAILABLE_RETRY_AFTER, ErrorResponse
from chorus_common.events import InvalidChannelError, room_channel
from chorus_common.rooms import DirectoryUnavailableError
from chorus_common.tokens import InvalidTokenError, bearer_token
from chorus_realtime.deps import ResourcesDep

__all__ = ["router"]

router = APIRouter(tags=["presence"])


class Member(BaseModel):
    """A user in the room, their display name and how many connections they hold there."""

    user_id: str
    name: str | None = Field(description="The display name (null for tokens without one).")
    connections: int


class RoomPresence(BaseModel):
    """The room's members (users with at least one live connection)."""

    room: str
    count: int
    connections: int
    members: list[Member]


@router.get(
    "/rooms/{room}/presence",
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse, "description": "You may not enter this room."},
        422: {"model": ErrorResponse},
        503: {"model": ErrorResponse, "description": "Room access cannot be checked now."},
    },
)
async def room_presence(
    room: str,
    request: Request,
    rt: ResourcesDep,
    token: str | None = Query(default=None, description="JWT, if not sent as a header"),
) -> RoomPresence:
    """Members of ``room`` with their names and connection counts (those who may enter it)."""
    raw = bearer_token(request.headers.get("authorization")) or token
    if not raw:
        raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    try:
        claims = await rt.tokens.verify(raw)
    except InvalidTokenError:
        raise HTTPException(401, "invalid token", {"WWW-Authenticate": "Bearer"}) from None
    try:
        channel = room_channel(room)
    except InvalidChannelError as exc:
        raise HTTPException(422, {"code": "invalid_room", "message": str(exc)}) from None
    try:
        access = await rt.guard.check(room, claims.subject, action="presence")
    except DirectoryUnavailableError:
        raise HTTPException(
            503,
            {"code": "unavailable", "message": "room access cannot be checked right now"},
            headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
        ) from None
    if not access.allowed:
        raise HTTPException(403, {"code": "forbidden", "message": "you may not enter this room"})
    members = await rt.presence.members(channel)
    ordered = sorted(members.items(), key=lambda item: item[0])
    return RoomPresence(
        room=room,
        count=len(ordered),
        connections=sum(present.connections for present in members.values()),
        members=[
            Member(user_id=user, name=present.name, connections=present.connections)
            for user, present in ordered
        ],
    )
