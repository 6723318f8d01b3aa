"""Who is in a room, and with which role: list, join, change roles, remove, leave, read.

Roles: the **owner** (one per room) may do everything, including handing the room over
(making someone else owner makes them admin); **admins** invite, remove members (not other
admins or the owner) and change the room; **members** read and write. In a public room
anyone may also join as a member, to keep it among their rooms.

Removing someone from a private room, or leaving it, takes their access away at once:
the access list is written before the commit with a ``member.removed`` event in the room's
stream, which every realtime replica acts on before it delivers anything published later
(:mod:`room_acl`). In a public room the person simply is no longer listed: like anyone,
they may still read it. Adding someone gives access from the commit on (``member.added``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.cursors import decode_id_cursor, encode_cursor
from chorus_api.domain.errors import (
    ConflictError,
    ForbiddenError,
    LimitReachedError,
    NotFoundError,
)
from chorus_api.domain.history import stream_position
from chorus_api.domain.pages import Page
from chorus_api.domain.room_acl import acl_of, bump_version
from chorus_api.domain.rooms import (
    ADMIN_ROLES,
    RoomServices,
    RoomView,
    refuse,
    require_role,
    room_view,
    visible_room,
)
from chorus_api.metrics import ROOM_CHANGES
from chorus_common.rooms import member_removed_event
from chorus_schema.models import Room, RoomMember, User

__all__ = [
    "MemberView",
    "add_member",
    "change_role",
    "join_room",
    "leave_room",
    "list_members",
    "mark_read",
    "member_added_event",
    "remove_member",
]

logger = logging.getLogger("chorus.api.members")

_LIST = "members"
ROLES: Final = ("owner", "admin", "member")


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member as others see them: a public profile (never an e-mail) and a role."""

    user_id: int
    display_name: str
    role: str
    joined_at: datetime


def member_added_event(
    user_id: int, name: str, role: str, version: int
) -> tuple[str, dict[str, object]]:
    """``member.added`` in the room: who, their display name and role."""
    return "member.added", {
        "user_id": str(user_id),
        "name": name,
        "role": role,
        "version": version,
    }


async def list_members(
    session: AsyncSession, *, name: str, user_id: int, limit: int, cursor: str | None
) -> Page[MemberView]:
    """Members of a public room (anyone) or of a private one you are in, by user id."""
    room, _ = await visible_room(session, name=name, user_id=user_id)
    query = (
        select(RoomMember.user_id, User.full_name, RoomMember.role, RoomMember.joined_at)
        .join(User, User.id == RoomMember.user_id)
        .where(RoomMember.room_id == room.id)
    )
    if cursor is not None:
        after = decode_id_cursor(_LIST, cursor)
        query = query.where(RoomMember.user_id > after)
    rows = (await session.execute(query.order_by(RoomMember.user_id).limit(limit + 1))).all()
    members = [MemberView(r.user_id, r.full_name, r.role, r.joined_at) for r in rows]
    if len(members) <= limit:
        return Page(members, None)
    return Page(members[:limit], encode_cursor(_LIST, members[limit - 1].user_id))


async def _check_capacity(session: AsyncSession, services: RoomServices, room: Room) -> None:
    count = await session.scalar(
        select(func.count()).select_from(RoomMember).where(RoomMember.room_id == room.id)
    )
    maximum = services.limits.max_members
    if int(count or 0) >= maximum:
        raise refuse(
            "members_per_room",
            LimitReachedError(
                f"The room has {maximum} members.", limit="members_per_room", maximum=maximum
            ),
        )


async def add_member(
    session: AsyncSession, services: RoomServices, *, room: Room, user_id: int, role: str
) -> bool:
    """Add ``user_id`` to ``room`` (locked by the caller) and commit; False if already in.

    Access is given after the commit (``member.added``); the caller's transaction ends here.
    """
    already = await session.scalar(
        select(RoomMember.role).where(RoomMember.room_id == room.id, RoomMember.user_id == user_id)
    )
    if already is not None:
        await session.commit()
        return False
    await _check_capacity(session, services, room)
    added = await session.scalar(
        insert(RoomMember)
        .values(room_id=room.id, user_id=user_id, role=role)
        .on_conflict_do_nothing()
        .returning(RoomMember.user_id)
    )
    if added is None:
        await session.commit()
        return False
    version = await bump_version(session, room)
    acl = await acl_of(session, room)
    name = await session.scalar(select(User.full_name).where(User.id == user_id))
    await session.commit()
    await services.writer.widen(room, acl, member_added_event(user_id, name or "", role, version))
    ROOM_CHANGES.labels("member_added").inc()
    return True


async def join_room(
    session: AsyncSession, services: RoomServices, *, name: str, user_id: int
) -> RoomView:
    """Join a public room as a member (private rooms take an invitation)."""
    room, role = await visible_room(session, name=name, user_id=user_id, lock=True)
    if role is None:
        await add_member(session, services, room=room, user_id=user_id, role="member")
        role = "member"
    else:
        await session.commit()
    return await room_view(session, room, role)


async def change_role(
    session: AsyncSession,
    services: RoomServices,
    *,
    name: str,
    actor_id: int,
    user_id: int,
    role: str,
) -> MemberView:
    """Give a member another role (owner only); ``owner`` hands the room over."""
    room, actor_role = await visible_room(session, name=name, user_id=actor_id, lock=True)
    require_role(actor_role, frozenset({"owner"}), "change roles")
    if user_id == actor_id:
        raise ConflictError("own_role", "Hand the room to someone else to change your role.")
    current = await session.scalar(
        select(RoomMember.role).where(RoomMember.room_id == room.id, RoomMember.user_id == user_id)
    )
    if current is None:
        raise NotFoundError("No such member.")
    if role != current:
        await session.execute(
            update(RoomMember)
            .where(RoomMember.room_id == room.id, RoomMember.user_id == user_id)
            .values(role=role)
        )
        data: dict[str, object] = {"user_id": str(user_id), "role": role}
        if role == "owner":
            await session.execute(
                update(RoomMember)
                .where(RoomMember.room_id == room.id, RoomMember.user_id == actor_id)
                .values(role="admin")
            )
            await session.execute(update(Room).where(Room.id == room.id).values(owner_id=user_id))
            data["previous_owner"] = str(actor_id)
        data["version"] = await bump_version(session, room)
        acl = await acl_of(session, room)
        await session.commit()
        await services.writer.widen(room, acl, ("member.updated", data))
        ROOM_CHANGES.labels("role_changed").inc()
    else:
        await session.commit()
    row = (
        await session.execute(
            select(User.full_name, RoomMember.joined_at)
            .join(RoomMember, RoomMember.user_id == User.id)
            .where(RoomMember.room_id == room.id, RoomMember.user_id == user_id)
        )
    ).one()
    return MemberView(user_id, row.full_name, role, row.joined_at)


async def _take_out(
    session: AsyncSession, services: RoomServices, room: Room, user_id: int, reason: str
) -> None:
    """Delete the membership, write the narrower list with ``member.removed``, commit."""
    await session.execute(
        delete(RoomMember).where(RoomMember.room_id == room.id, RoomMember.user_id == user_id)
    )
    version = await bump_version(session, room)
    event = member_removed_event(
        user_id, reason=reason, private=room.visibility == "private", version=version
    )
    await services.writer.narrow(room, await acl_of(session, room), event)
    await session.commit()


async def remove_member(
    session: AsyncSession, services: RoomServices, *, name: str, actor_id: int, user_id: int
) -> None:
    """Remove someone (the owner: anyone else; an admin: members); leaving is :func:`leave_room`."""
    room, actor_role = await visible_room(session, name=name, user_id=actor_id, lock=True)
    if room.kind == "dm":
        raise ConflictError("dm_fixed", "Direct-message rooms keep their two members.")
    require_role(actor_role, ADMIN_ROLES, "remove members")
    target = await session.scalar(
        select(RoomMember.role).where(RoomMember.room_id == room.id, RoomMember.user_id == user_id)
    )
    if target is None:
        raise NotFoundError("No such member.")
    if target == "owner" or (actor_role == "admin" and target == "admin"):
        raise refuse(
            "role",
            ForbiddenError("Only the owner may remove admins; nobody the owner."),
        )
    await _take_out(session, services, room, user_id, "removed")
    ROOM_CHANGES.labels("member_removed").inc()
    logger.info("member removed", extra={"room": room.name, "user_id": user_id})


async def leave_room(
    session: AsyncSession, services: RoomServices, *, name: str, user_id: int
) -> None:
    """Leave a room you are in (the owner hands it over or deletes it instead)."""
    room, role = await visible_room(session, name=name, user_id=user_id, lock=True)
    if role is None:
        raise NotFoundError("You are not a member of this room.")
    if room.kind == "dm":
        raise ConflictError("dm_fixed", "Direct-message rooms keep their two members.")
    if role == "owner":
        raise ConflictError(
            "owner_cannot_leave", "Hand the room to another member first, or delete it."
        )
    await _take_out(session, services, room, user_id, "left")
    ROOM_CHANGES.labels("member_left").inc()


async def mark_read(session: AsyncSession, *, name: str, user_id: int, up_to: str) -> None:
    """Note that the member has read ``name`` up to stream id ``up_to`` (never backwards)."""
    ms, seq = stream_position(up_to)
    room, role = await visible_room(session, name=name, user_id=user_id)
    if role is None:
        raise NotFoundError("You are not a member of this room.")
    await session.execute(
        update(RoomMember)
        .where(
            RoomMember.room_id == room.id,
            RoomMember.user_id == user_id,
            (RoomMember.last_read_ms < ms)
            | ((RoomMember.last_read_ms == ms) & (RoomMember.last_read_seq < seq)),
        )
        .values(last_read_ms=ms, last_read_seq=seq)
    )
    await session.commit()
