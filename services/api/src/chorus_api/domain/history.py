"""Room history from Postgres: what the worker persisted from the rooms' Redis streams.

Newest first, as chat clients load history: the first page is the latest messages, each
next page goes further back (``before`` = the oldest stream id already shown). Items are
event envelopes, exactly as realtime delivers them live, so one parser serves both. The
sort key is the stream position ``(stream_ms, stream_seq)``, which the unique index
``(room, stream_ms, stream_seq)`` serves in order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.cursors import BIGINT_MAX, decode_cursor, encode_cursor
from chorus_api.domain.errors import InvalidCursorError
from chorus_api.domain.pages import Page
from chorus_common.events import InvalidStreamIdError, parse_stream_id, room_channel
from chorus_schema.models import RoomMessage

__all__ = ["message_envelope", "room_history", "stream_position"]

_LIST = "room"


def message_envelope(message: RoomMessage) -> dict[str, Any]:
    """The stored message as the event envelope clients know from realtime."""
    return {
        "id": f"{message.stream_ms}-{message.stream_seq}",
        "channel": room_channel(message.room),
        "type": message.type,
        "data": message.data,
        "ts": message.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "from": message.sender,
    }


def stream_position(value: str) -> tuple[int, int]:
    """A stream id as the two integers it is stored as; :class:`InvalidCursorError` if not one."""
    try:
        ms, seq = parse_stream_id(value)
    except InvalidStreamIdError as exc:
        raise InvalidCursorError(str(exc)) from exc
    if ms > BIGINT_MAX or seq > BIGINT_MAX:
        msg = "stream id out of range"
        raise InvalidCursorError(msg)
    return ms, seq


async def room_history(
    session: AsyncSession,
    *,
    room: str,
    limit: int,
    before: str | None = None,
    cursor: str | None = None,
) -> Page[RoomMessage]:
    """Messages of ``room`` older than ``before`` (a stream id) or the cursor, newest first."""
    room_channel(room)  # validates the name
    query = select(RoomMessage).where(RoomMessage.room == room)
    position = tuple_(RoomMessage.stream_ms, RoomMessage.stream_seq)
    if cursor is not None:
        key = decode_cursor(_LIST, cursor)
        if not isinstance(key, str):
            msg = "cursor is malformed"
            raise InvalidCursorError(msg)
        before = key
    if before is not None:
        query = query.where(position < tuple_(*stream_position(before)))
    query = query.order_by(RoomMessage.stream_ms.desc(), RoomMessage.stream_seq.desc())
    rows = list((await session.scalars(query.limit(limit + 1))).all())
    items = rows[:limit]
    if len(rows) <= limit:
        return Page(items, None)
    last = items[-1]
    return Page(items, encode_cursor(_LIST, f"{last.stream_ms}-{last.stream_seq}"))
