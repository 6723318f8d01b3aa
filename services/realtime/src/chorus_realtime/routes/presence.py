"""``GET /rooms/{room}/presence``: who is in a room right now, across every replica."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from chorus_common.errors import ErrorResponse
from chorus_common.events import InvalidChannelError, room_channel
from chorus_common.tokens import InvalidTokenError, bearer_token
from chorus_realtime.deps import ResourcesDep

__all__ = ["router"]

router = APIRouter(tags=["presence"])


class Member(BaseModel):
    """A user in the room and how many connections they hold there."""

    user_id: str
    connections: int


class RoomPresence(BaseModel):
    """The room's members (users with at least one live connection)."""

    room: str
    count: int
    connections: int
    members: list[Member]


@router.get(
    "/rooms/{room}/presence",
    responses={401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def room_presence(
    room: str,
    request: Request,
    rt: ResourcesDep,
    token: str | None = Query(default=None, description="JWT, if not sent as a header"),
) -> RoomPresence:
    """Members of ``room`` with their connection counts (any signed-in user may ask)."""
    raw = bearer_token(request.headers.get("authorization")) or token
    if not raw:
        raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
    try:
        await rt.tokens.verify(raw)
    except InvalidTokenError:
        raise HTTPException(401, "invalid token", {"WWW-Authenticate": "Bearer"}) from None
    try:
        channel = room_channel(room)
    except InvalidChannelError as exc:
        raise HTTPException(422, {"code": "invalid_room", "message": str(exc)}) from None
    members = await rt.presence.members(channel)
    ordered = sorted(members.items(), key=lambda item: item[0])
    return RoomPresence(
        room=room,
        count=len(ordered),
        connections=sum(members.values()),
        members=[Member(user_id=user, connections=n) for user, n in ordered],
    )
