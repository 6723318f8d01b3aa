"""Direct messages: one private room per pair of people, made the first time either asks.

The room of users 3 and 12 is ``dm.3.12`` (``chorus_common.rooms.dm_room``): private,
exactly those two members, never changed or deleted. Opening it is idempotent even when
both open it at the same moment — the unique room name decides, and the loser of the
race reads the winner's room. Opening a new one counts against ``DM_OPENS_PER_HOUR``
(429 beyond): each new conversation can notify a stranger.

Messages are written over realtime like any room's; realtime also tells the other person
on their ``user:<id>`` channel (``dm.message``). :func:`list_dms` gives each conversation
with the other person's public profile and how many of their messages are unread (stored
history after the member's read mark, counted up to :data:`UNREAD_CAP`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from chorus_api.domain.cursors import decode_id_cursor, encode_cursor
from chorus_api.domain.errors import NotFoundError, RateLimitedError
from chorus_api.domain.pages import Page
from chorus_api.domain.room_acl import acl_of
from chorus_api.domain.rooms import (
    RoomServices,
    RoomView,
    load_room,
    refuse,
    require_private_rooms,
    room_view,
)
from chorus_api.metrics import ROOM_CHANGES
from chorus_common.rooms import dm_room
from chorus_schema.models import Room, RoomMember, RoomMessage, User

__all__ = ["UNREAD_CAP", "DmView", "list_dms", "open_dm"]

logger = logging.getLogger("chorus.api.dms")

_LIST = "dms"
_HOUR: Final = 3600
#: Unread counts stop at this (a client shows "99+").
UNREAD_CAP: Final = 100


@dataclass(frozen=True, slots=True)
class DmView:
    """A conversation as one of its two members sees it."""

    room: Room
    peer_id: int | None
    peer_name: str | None
    unread: int
    last_message_at: datetime | None


async def open_dm(
    session: AsyncSession, services: RoomServices, *, user_id: int, peer_id: int
) -> tuple[RoomView, bool]:
    """The direct-message room of the two users, made if needed; and whether it is new."""
    require_private_rooms(services)
    if await session.scalar(select(User.id).where(User.id == peer_id)) is None:
        raise NotFoundError("No such user.")
    name = dm_room(user_id, peer_id)
    existing = await load_room(session, name)
    if existing is not None:
        await session.commit()
        return await room_view(session, existing, "member"), False
    try:
        await services.quotas.take(
            "dms", str(user_id), limit=services.limits.dms_per_hour, window_seconds=_HOUR
        )
    except RateLimitedError as exc:
        raise refuse("dms_rate", exc) from None
    room_id = await session.scalar(
        insert(Room)
        .values(name=name, visibility="private", kind="dm", owner_id=None)
        .on_conflict_do_nothing(index_elements=[Room.name])
        .returning(Room.id)
    )
    if room_id is None:
        # Opened by the other one at the same moment: theirs is committed now.
        await session.commit()
        room = await load_room(session, name)
        if room is None:  # pragma: no cover - a direct-message room is never deleted
            raise NotFoundError("No such room.")
        return await room_view(session, room, "member"), False
    await session.execute(
        insert(RoomMember),
        [
            {"room_id": room_id, "user_id": user_id, "role": "member"},
            {"room_id": room_id, "user_id": peer_id, "role": "member"},
        ],
    )
    room = await session.get_one(Room, room_id)
    await services.writer.narrow(room, await acl_of(session, room))
    await session.commit()
    ROOM_CHANGES.labels("dm_opened").inc()
    return RoomView(room, "member", 2, None), True


async def list_dms(
    session: AsyncSession, *, user_id: int, limit: int, cursor: str | None
) -> Page[DmView]:
    """The user's conversations, newest first, with the other person and unread counts."""
    me = aliased(RoomMember)
    peer = aliased(RoomMember)
    newer = tuple_(RoomMessage.stream_ms, RoomMessage.stream_seq) > tuple_(
        me.last_read_ms, me.last_read_seq
    )
    # Counted up to the cap only: a conversation with years of unread history costs what a
    # fresh one does (the unique (room, position) index walks from the read mark).
    unread_rows = (
        select(RoomMessage.id)
        .where(RoomMessage.room == Room.name, newer, RoomMessage.sender != str(user_id))
        .correlate_except(RoomMessage)
        .limit(UNREAD_CAP)
        .subquery()
    )
    last_at = (
        select(RoomMessage.created_at)
        .where(RoomMessage.room == Room.name)
        .order_by(RoomMessage.stream_ms.desc(), RoomMessage.stream_seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    unread = select(func.count()).select_from(unread_rows).scalar_subquery()
    query = (
        select(Room, peer.user_id, User.full_name, unread, last_at)
        .join(me, (me.room_id == Room.id) & (me.user_id == user_id))
        .outerjoin(peer, (peer.room_id == Room.id) & (peer.user_id != user_id))
        .outerjoin(User, User.id == peer.user_id)
        .where(Room.kind == "dm", Room.deleted_at.is_(None))
    )
    if cursor is not None:
        after = decode_id_cursor(_LIST, cursor)
        query = query.where(Room.id < after)
    rows = (await session.execute(query.order_by(Room.id.desc()).limit(limit + 1))).all()
    views = [
        DmView(room, peer_id, peer_name, int(count or 0), at)
        for room, peer_id, peer_name, count, at in rows[:limit]
    ]
    if len(rows) <= limit:
        return Page(views, None)
    return Page(views, encode_cursor(_LIST, views[-1].room.id))
