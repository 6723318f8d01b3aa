"""``/api/rooms/{room}/messages``: a room's stored history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from chorus_api.deps import CurrentUserId, ReadSessionDep
from chorus_api.domain.errors import InvalidCursorError
from chorus_api.domain.pages import DEFAULT_PAGE_SIZE
from chorus_api.domain.rooms import message_envelope, room_history
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.pages import CursorQuery, LimitQuery, PageOut
from chorus_api.schemas.rooms import MessageOut

__all__ = ["router"]

router = APIRouter(prefix="/api/rooms", tags=["rooms"])

#: The same rule as chorus_common.events.room_channel.
ROOM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
STREAM_ID_PATTERN = r"^\d{1,19}-\d{1,19}$"


@router.get("/{room}/messages", responses=error_responses(401, 422, 503, s422="invalid_cursor"))
async def messages(
    room: Annotated[str, Path(pattern=ROOM_PATTERN, description="Room name, as in /ws/{room}.")],
    _user_id: CurrentUserId,
    session: ReadSessionDep,
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
    sent; realtime's own replay covers that moment.
    """
    try:
        page = await room_history(session, room=room, limit=limit, before=before, cursor=cursor)
    except InvalidCursorError as exc:
        raise HTTPException(422, {"code": "invalid_cursor", "message": str(exc)}) from None
    return PageOut[MessageOut](
        items=[MessageOut.model_validate(message_envelope(m)) for m in page.items],
        next_cursor=page.next_cursor,
    )
