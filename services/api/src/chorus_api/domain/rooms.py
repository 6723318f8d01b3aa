"""Rooms people own: create, read, change, delete, and the lists of them.

A room has a name (its realtime channel ``room:<name>``, fixed for life), a visibility —
``public``: anyone signed in may read and write it; ``private``: its members only — an
owner, and members with roles (``owner``, ``admin``, ``member``; :mod:`members`). Names
nobody registered keep working as public rooms, as they always did; registering a name
someone already used (its stream or stored history exists) is refused, so nobody can take
over a room others talk in. Direct-message rooms (``dm.<a>.<b>``, :mod:`dms`) are rooms of
``kind`` ``dm``: private, exactly two members, never changed.

**What outsiders learn.** The resource routes answer a private room you are not in — or a
deleted one — exactly like a name that is not registered: not found. A member without the
role for a change is told so (forbidden). Who may read a room's *content* is the rule of
``chorus_common.rooms``, which the history route asks like every realtime door.

Every change of who may enter goes through :mod:`room_acl` (version, Redis copy, the
event realtime acts on); the functions here commit their own transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import Select, delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.cursors import decode_cursor, decode_id_cursor, encode_cursor
from chorus_api.domain.errors import (
    ConflictError,
    ForbiddenError,
    InvalidCursorError,
    LimitReachedError,
    NotFoundError,
    UserGoneError,
)
from chorus_api.domain.pages import Page
from chorus_api.domain.quotas import Quotas
from chorus_api.domain.room_acl import AclWriter, acl_of, bump_version
from chorus_api.metrics import ROOM_CHANGES, ROOM_REFUSALS
from chorus_common.events import EventBus, room_channel
from chorus_common.rooms import (
    DM_PREFIX,
    RoomDirectory,
    room_deleted_event,
    room_updated_event,
)
from chorus_schema.models import Room, RoomInvitation, RoomMember, RoomMessage, User

__all__ = [
    "ADMIN_ROLES",
    "RoomLimits",
    "RoomServices",
    "RoomView",
    "create_room",
    "delete_room",
    "get_room",
    "load_room",
    "my_rooms",
    "public_rooms",
    "refuse",
    "require_private_rooms",
    "require_role",
    "room_view",
    "update_room",
    "visible_room",
]

logger = logging.getLogger("chorus.api.rooms")

#: Roles that may invite, remove members and change the room.
ADMIN_ROLES: Final = frozenset({"owner", "admin"})
SENDER: Final = "api"
_MINE = "rooms"
_PUBLIC = "public-rooms"


@dataclass(frozen=True, slots=True)
class RoomLimits:
    """What one person may hold (from settings)."""

    max_owned: int
    max_members: int
    max_pending_invitations: int
    invitations_per_hour: int
    invitation_mails_per_address_per_day: int
    dms_per_hour: int
    #: False when the channels live on a Redis Cluster, where realtime cannot enforce
    #: access lists (it runs every room open): no private room, no direct message.
    private_rooms: bool = True


def require_private_rooms(services: RoomServices) -> None:
    """409 ``private_rooms_unavailable`` where realtime runs every room open (a cluster)."""
    if not services.limits.private_rooms:
        raise ConflictError(
            "private_rooms_unavailable",
            "This deployment keeps its channels on a Redis Cluster, where every room is "
            "public: private rooms and direct messages are not available.",
        )


@dataclass(frozen=True, slots=True)
class RoomServices:
    """What room changes need beyond the session: the access lists, events, jobs, quotas."""

    writer: AclWriter
    directory: RoomDirectory
    bus: EventBus
    arq: ArqRedis
    quotas: Quotas
    limits: RoomLimits


@dataclass(frozen=True, slots=True)
class RoomView:
    """A room as one user sees it: their role (None: not a member), members, the owner."""

    room: Room
    role: str | None
    member_count: int
    owner_name: str | None


def refuse(reason: str, error: Exception) -> Exception:
    """Count a refusal (``chorus_api_room_refusals_total``) and hand back its error."""
    ROOM_REFUSALS.labels(reason).inc()
    return error


def _not_found() -> NotFoundError:
    return NotFoundError("No such room.")


async def load_room(session: AsyncSession, name: str, *, lock: bool = False) -> Room | None:
    """The registered, not deleted room ``name`` (row-locked with ``lock``)."""
    query = select(Room).where(Room.name == name, Room.deleted_at.is_(None))
    if lock:
        query = query.with_for_update()
    room: Room | None = await session.scalar(query)
    return room


async def _role(session: AsyncSession, room: Room, user_id: int) -> str | None:
    role: str | None = await session.scalar(
        select(RoomMember.role).where(RoomMember.room_id == room.id, RoomMember.user_id == user_id)
    )
    return role


async def visible_room(
    session: AsyncSession, *, name: str, user_id: int, lock: bool = False
) -> tuple[Room, str | None]:
    """The room and the user's role in it; not found unless it is public or theirs."""
    room = await load_room(session, name, lock=lock)
    if room is None:
        raise _not_found()
    role = await _role(session, room, user_id)
    if role is None and room.visibility != "public":
        raise refuse("not_member", _not_found())
    return room, role


def require_role(role: str | None, allowed: frozenset[str], action: str) -> None:
    """Raise :class:`ForbiddenError` unless ``role`` is one of ``allowed``."""
    if role not in allowed:
        who = " or ".join(sorted(allowed))
        raise refuse("role", ForbiddenError(f"Only the room's {who} may {action}."))


async def room_view(session: AsyncSession, room: Room, role: str | None) -> RoomView:
    """The :class:`RoomView` of ``room`` for a user with ``role``."""
    count = await session.scalar(
        select(func.count()).select_from(RoomMember).where(RoomMember.room_id == room.id)
    )
    owner = None
    if room.owner_id is not None:
        owner = await session.scalar(select(User.full_name).where(User.id == room.owner_id))
    return RoomView(room, role, int(count or 0), owner)


async def _name_in_use(session: AsyncSession, bus: EventBus, name: str) -> bool:
    """True when ``name`` is registered, or was used as a room by name (history exists)."""
    if await session.scalar(select(Room.id).where(Room.name == name)) is not None:
        return True
    if await bus.redis.exists(bus.layout.stream(room_channel(name))):
        return True
    stored = await session.scalar(select(RoomMessage.id).where(RoomMessage.room == name).limit(1))
    return stored is not None


async def create_room(
    session: AsyncSession,
    services: RoomServices,
    *,
    owner_id: int,
    name: str,
    visibility: str,
    topic: str | None,
) -> RoomView:
    """Register ``name`` with its creator as owner; 409 ``room_name_taken`` if it is used."""
    if visibility == "private":
        require_private_rooms(services)
    if name.startswith(DM_PREFIX):
        raise ConflictError("reserved_name", "Names starting with 'dm.' are direct messages.")
    # One creation at a time per owner, so the count below cannot be overtaken.
    if await session.scalar(select(User.id).where(User.id == owner_id).with_for_update()) is None:
        raise UserGoneError(owner_id)
    owned = await session.scalar(
        select(func.count())
        .select_from(Room)
        .where(Room.owner_id == owner_id, Room.kind == "room", Room.deleted_at.is_(None))
    )
    maximum = services.limits.max_owned
    if int(owned or 0) >= maximum:
        raise refuse(
            "rooms_per_owner",
            LimitReachedError(
                f"You own {maximum} rooms already; delete one first.",
                limit="rooms_per_owner",
                maximum=maximum,
            ),
        )
    if await _name_in_use(session, services.bus, name):
        raise ConflictError("room_name_taken", f"The name {name!r} is already in use.")
    room = Room(name=name, visibility=visibility, kind="room", topic=topic, owner_id=owner_id)
    session.add(room)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise ConflictError("room_name_taken", f"The name {name!r} is already in use.") from None
    await session.refresh(room)
    session.add(RoomMember(room_id=room.id, user_id=owner_id, role="owner"))
    await session.flush()
    # The name stops being open to everyone before anyone can see the room exists.
    await services.writer.narrow(room, await acl_of(session, room))
    owner_name = await session.scalar(select(User.full_name).where(User.id == owner_id))
    await session.commit()
    ROOM_CHANGES.labels("created").inc()
    logger.info("room created", extra={"room": name, "visibility": visibility})
    return RoomView(room, "owner", 1, owner_name)


async def get_room(session: AsyncSession, *, name: str, user_id: int) -> RoomView:
    """The room, if it is public or the user is in it."""
    room, role = await visible_room(session, name=name, user_id=user_id)
    return await room_view(session, room, role)


async def update_room(
    session: AsyncSession,
    services: RoomServices,
    *,
    name: str,
    user_id: int,
    visibility: str | None,
    topic: str | None,
    clear_topic: bool = False,
) -> RoomView:
    """Change the visibility or topic (owner or admin); ``room.updated`` in the room.

    Made private, everyone who is not a member loses access at once (their sockets are
    dropped); made public, anyone may enter from the commit on.
    """
    room, role = await visible_room(session, name=name, user_id=user_id, lock=True)
    if room.kind == "dm":
        raise ConflictError("dm_fixed", "Direct-message rooms cannot be changed.")
    require_role(role, ADMIN_ROLES, "change it")
    new_topic = None if clear_topic else (topic if topic is not None else room.topic)
    widened = None
    if visibility is not None and visibility != room.visibility:
        if visibility == "private":
            require_private_rooms(services)
        room.topic = new_topic
        room.visibility = visibility
        await session.flush()
        version = await bump_version(session, room)
        acl = await acl_of(session, room)
        event = room_updated_event(
            visibility=visibility, topic=new_topic, version=version, members=acl.members
        )
        if visibility == "private":
            await services.writer.narrow(room, acl, event)
        else:
            widened = (acl, event)
        await session.commit()
        if widened is not None:
            await services.writer.widen(room, *widened)
    elif new_topic != room.topic:
        room.topic = new_topic
        await session.commit()
        await _announce(services.bus, room, new_topic)
    else:
        await session.commit()
    ROOM_CHANGES.labels("updated").inc()
    return await room_view(session, room, role)


async def _announce(bus: EventBus, room: Room, topic: str | None) -> None:
    """A topic change: told to the room after the commit (best effort, like notifications)."""
    try:
        kind, data = room_updated_event(
            visibility=room.visibility, topic=topic, version=room.acl_version
        )
        await bus.publish(room_channel(room.name), kind, data, sender=SENDER)
    except (RedisError, OSError):
        logger.warning("could not announce a topic change", extra={"room": room.name})


async def delete_room(
    session: AsyncSession, services: RoomServices, *, name: str, user_id: int
) -> None:
    """Delete the room (owner only): everyone loses access at once, its history is wiped.

    The name stays registered (deleted) so it never becomes an open room with the old
    name's leftovers; a new room cannot take it.
    """
    room, role = await visible_room(session, name=name, user_id=user_id, lock=True)
    if room.kind == "dm":
        raise ConflictError("dm_fixed", "Direct-message rooms cannot be deleted.")
    require_role(role, frozenset({"owner"}), "delete it")
    room.deleted_at = func.now()
    await session.flush()
    await session.refresh(room)
    version = await bump_version(session, room)
    await session.execute(delete(RoomMember).where(RoomMember.room_id == room.id))
    await session.execute(delete(RoomInvitation).where(RoomInvitation.room_id == room.id))
    await session.execute(delete(RoomMessage).where(RoomMessage.room == room.name))
    await services.writer.narrow(
        room, await acl_of(session, room), room_deleted_event(version=version)
    )
    await session.commit()
    channel = room_channel(room.name)
    try:
        layout = services.bus.layout
        await services.bus.redis.delete(layout.stream(channel), layout.epoch(channel))
    except (RedisError, OSError):
        logger.warning("could not wipe a deleted room's stream", extra={"room": room.name})
    ROOM_CHANGES.labels("deleted").inc()
    logger.info("room deleted", extra={"room": room.name})


def _key_of(view: RoomView) -> int:
    return view.room.id


async def _views(session: AsyncSession, query: Select[Room, str | None]) -> list[RoomView]:
    rows = (await session.execute(query)).all()
    if not rows:
        return []
    ids = [room.id for room, _ in rows]
    counts = dict(
        (
            await session.execute(
                select(RoomMember.room_id, func.count())
                .where(RoomMember.room_id.in_(ids))
                .group_by(RoomMember.room_id)
            )
        ).all()
    )
    owners = {room.owner_id for room, _ in rows if room.owner_id is not None}
    names = dict(
        (await session.execute(select(User.id, User.full_name).where(User.id.in_(owners)))).all()
    )
    return [
        RoomView(
            room,
            role,
            int(counts.get(room.id, 0)),
            names.get(room.owner_id) if room.owner_id is not None else None,
        )
        for room, role in rows
    ]


async def my_rooms(
    session: AsyncSession, *, user_id: int, kind: str | None, limit: int, cursor: str | None
) -> Page[RoomView]:
    """Rooms the user is a member of, newest first (``kind``: ``room``/``dm``/both)."""
    query = (
        select(Room, RoomMember.role)
        .join(RoomMember, RoomMember.room_id == Room.id)
        .where(RoomMember.user_id == user_id, Room.deleted_at.is_(None))
    )
    if kind is not None:
        query = query.where(Room.kind == kind)
    if cursor is not None:
        after = decode_id_cursor(_MINE, cursor)
        query = query.where(Room.id < after)
    views = await _views(session, query.order_by(Room.id.desc()).limit(limit + 1))
    if len(views) <= limit:
        return Page(views, None)
    return Page(views[:limit], encode_cursor(_MINE, _key_of(views[limit - 1])))


def _like_prefix(prefix: str) -> str:
    escaped = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def public_rooms(
    session: AsyncSession, *, user_id: int, prefix: str | None, limit: int, cursor: str | None
) -> Page[RoomView]:
    """Public rooms by name (case-insensitive prefix search), alphabetically."""
    lowered = func.lower(Room.name)
    role = (
        select(RoomMember.role)
        .where(RoomMember.room_id == Room.id, RoomMember.user_id == user_id)
        .scalar_subquery()
    )
    query = select(Room, role).where(
        Room.visibility == "public", Room.deleted_at.is_(None), Room.kind == "room"
    )
    if prefix:
        query = query.where(lowered.like(_like_prefix(prefix), escape="\\"))
    if cursor is not None:
        after = decode_cursor(_PUBLIC, cursor)
        if not isinstance(after, str):
            raise InvalidCursorError("cursor is malformed")
        query = query.where(tuple_(lowered, Room.name) > tuple_(func.lower(after), after))
    query = query.order_by(lowered, Room.name).limit(limit + 1)
    views = await _views(session, query)
    if len(views) <= limit:
        return Page(views, None)
    return Page(views[:limit], encode_cursor(_PUBLIC, views[limit - 1].room.name))
