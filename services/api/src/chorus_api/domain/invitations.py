"""Invitations into rooms: by account or by e-mail address, accepted or declined by the invitee.

Nobody is put into a room without saying yes: an owner or admin invites (``admin`` only
by the owner), the invitee accepts — and is a member, able to join at once — or declines.

**By e-mail** the invitation waits for whoever owns the address: someone who has an
account sees it at once (and gets a notification), someone who signs up with the address
later finds it there. The inviter's answer is the same either way, so inviting does not
tell which addresses have accounts; a member who accepts an invitation twice is simply a
member. Each invitation mails its address once (``send_room_invitation_email``, through
the worker), within two limits, because every invitation can mail a stranger from our
domain: ``ROOM_INVITATIONS_PER_HOUR`` per inviter (429 beyond), and
``ROOM_INVITATION_MAILS_PER_ADDRESS_PER_DAY`` per address (beyond it the invitation is
made, the mail is not). A room holds at most ``ROOM_MAX_PENDING_INVITATIONS`` pending ones.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.cursors import decode_id_cursor, encode_cursor
from chorus_api.domain.errors import (
    ConflictError,
    ForbiddenError,
    LimitReachedError,
    NotFoundError,
    RateLimitedError,
)
from chorus_api.domain.jobs import enqueue
from chorus_api.domain.members import add_member
from chorus_api.domain.pages import Page
from chorus_api.domain.rooms import (
    ADMIN_ROLES,
    RoomServices,
    load_room,
    refuse,
    require_role,
    visible_room,
)
from chorus_api.domain.users import normalize_email
from chorus_api.metrics import ROOM_CHANGES, ROOM_INVITATION_MAILS
from chorus_schema.models import Room, RoomInvitation, RoomMember, User
from chorus_schema.notifications import add_notification, publish_notification

__all__ = [
    "InvitationView",
    "accept_invitation",
    "decline_invitation",
    "invitation_job_id",
    "invite",
    "my_invitations",
    "revoke_invitation",
    "room_invitations",
]

logger = logging.getLogger("chorus.api.invitations")

_LIST = "invitations"
_HOUR: Final = 3600
_DAY: Final = 86_400
#: The most pending invitations one person is shown at once.
MAX_LISTED: Final = 100


@dataclass(frozen=True, slots=True)
class InvitationView:
    """An invitation: the room, the role offered, who asked, and who is invited.

    ``email`` is set for invitations by address (shown to the room's admins, who typed it,
    and to the invitee); ``user_id``/``user_name`` for invitations by account.
    """

    id: int
    room: str
    visibility: str
    role: str
    email: str | None
    user_id: int | None
    user_name: str | None
    inviter_name: str | None
    created_at: datetime


def invitation_job_id(invitation_id: int) -> str:
    """The id of an invitation's mail job: one mail per invitation."""
    return f"room-invitation:{invitation_id}"


def _address_key(email: str) -> str:
    # Quota keys name the address by a hash: Redis keys end up in dumps and monitors.
    return hashlib.sha256(email.encode()).hexdigest()[:32]


async def _view(session: AsyncSession, invitation: RoomInvitation, room: Room) -> InvitationView:
    names = dict(
        (
            await session.execute(
                select(User.id, User.full_name).where(
                    User.id.in_(
                        [i for i in (invitation.user_id, invitation.invited_by) if i is not None]
                    )
                )
            )
        ).all()
    )
    return InvitationView(
        id=invitation.id,
        room=room.name,
        visibility=room.visibility,
        role=invitation.role,
        email=invitation.email,
        user_id=invitation.user_id,
        user_name=names.get(invitation.user_id) if invitation.user_id is not None else None,
        inviter_name=names.get(invitation.invited_by) if invitation.invited_by else None,
        created_at=invitation.created_at,
    )


async def invite(
    session: AsyncSession,
    services: RoomServices,
    *,
    name: str,
    inviter_id: int,
    email: str | None = None,
    user_id: int | None = None,
    role: str = "member",
) -> tuple[InvitationView, bool]:
    """Invite an account or an address; the invitation, and whether it is new.

    Inviting again whoever has a pending invitation answers that one (nothing is mailed).
    """
    room, actor_role = await visible_room(session, name=name, user_id=inviter_id, lock=True)
    if room.kind == "dm":
        raise ConflictError("dm_fixed", "Direct-message rooms keep their two members.")
    require_role(actor_role, ADMIN_ROLES, "invite")
    if role == "admin" and actor_role != "owner":
        raise refuse("role", ForbiddenError("Only the owner may invite admins."))
    address = normalize_email(email) if email is not None else None
    recipient: int | None = None
    if user_id is not None:
        if await session.scalar(select(User.id).where(User.id == user_id)) is None:
            raise NotFoundError("No such user.")
        member = await session.scalar(
            select(RoomMember.role).where(
                RoomMember.room_id == room.id, RoomMember.user_id == user_id
            )
        )
        if member is not None:
            raise ConflictError("already_member", "This person is a member already.")
        recipient = user_id
        existing = await session.scalar(
            select(RoomInvitation).where(
                RoomInvitation.room_id == room.id, RoomInvitation.user_id == user_id
            )
        )
    else:
        assert address is not None
        recipient = await session.scalar(select(User.id).where(User.email == address))
        existing = await session.scalar(
            select(RoomInvitation).where(
                RoomInvitation.room_id == room.id, RoomInvitation.email == address
            )
        )
    if existing is not None:
        await session.commit()
        return await _view(session, existing, room), False
    pending = await session.scalar(
        select(func.count()).select_from(RoomInvitation).where(RoomInvitation.room_id == room.id)
    )
    maximum = services.limits.max_pending_invitations
    if int(pending or 0) >= maximum:
        raise refuse(
            "pending_invitations",
            LimitReachedError(
                f"The room has {maximum} pending invitations.",
                limit="pending_invitations",
                maximum=maximum,
            ),
        )
    try:
        await services.quotas.take(
            "invitations",
            str(inviter_id),
            limit=services.limits.invitations_per_hour,
            window_seconds=_HOUR,
        )
    except RateLimitedError as exc:
        raise refuse("invitations_rate", exc) from None
    invitation = RoomInvitation(
        room_id=room.id, user_id=user_id, email=address, role=role, invited_by=inviter_id
    )
    session.add(invitation)
    await session.flush()
    await session.refresh(invitation)
    inviter = await session.scalar(select(User.full_name).where(User.id == inviter_id))
    notification = None
    if recipient is not None:
        notification = await add_notification(
            session,
            user_id=recipient,
            type_="room.invited",
            data={
                "invitation_id": invitation.id,
                "room": room.name,
                "role": role,
                "inviter": inviter,
            },
        )
    await session.commit()
    ROOM_CHANGES.labels("invited").inc()
    if notification is not None:
        try:
            await publish_notification(services.bus, notification, sender="api")
        except (RedisError, OSError):
            # The row is committed and listed; only the live event is lost.
            logger.warning("could not publish an invitation notification")
    await _mail(
        session, services, invitation, address=address, recipient=recipient, inviter_id=inviter_id
    )
    return await _view(session, invitation, room), True


async def _mail(
    session: AsyncSession,
    services: RoomServices,
    invitation: RoomInvitation,
    *,
    address: str | None,
    recipient: int | None,
    inviter_id: int,
) -> None:
    """Queue the invitation's mail, unless its address had its share of them today."""
    if address is None and recipient is not None:
        address = await session.scalar(select(User.email).where(User.id == recipient))
    if address is None:  # pragma: no cover - an invitation always has an invitee
        return
    wait = await services.quotas.try_take(
        "invitation-mails",
        _address_key(address),
        limit=services.limits.invitation_mails_per_address_per_day,
        window_seconds=_DAY,
    )
    if wait:
        ROOM_INVITATION_MAILS.labels("suppressed").inc()
        logger.info(
            "invitation mail suppressed: address limit", extra={"room_id": invitation.room_id}
        )
        return
    await enqueue(
        services.arq,
        function="send_room_invitation_email",
        args=(invitation.id,),
        job_id=invitation_job_id(invitation.id),
        owner_id=inviter_id,
    )
    ROOM_INVITATION_MAILS.labels("queued").inc()


def _mine(user_id: int, email: str) -> ColumnElement[bool]:
    return or_(
        RoomInvitation.user_id == user_id,
        (RoomInvitation.user_id.is_(None)) & (RoomInvitation.email == email),
    )


async def my_invitations(session: AsyncSession, *, user_id: int) -> list[InvitationView]:
    """Pending invitations for the user (by account, or by their current address)."""
    email = await session.scalar(select(User.email).where(User.id == user_id))
    if email is None:
        return []
    rows = (
        await session.execute(
            select(RoomInvitation, Room)
            .join(Room, Room.id == RoomInvitation.room_id)
            .where(_mine(user_id, email), Room.deleted_at.is_(None))
            .order_by(RoomInvitation.id.desc())
            .limit(MAX_LISTED)
        )
    ).all()
    return [await _view(session, invitation, room) for invitation, room in rows]


async def room_invitations(
    session: AsyncSession, *, name: str, user_id: int, limit: int, cursor: str | None
) -> Page[InvitationView]:
    """A room's pending invitations, newest first (its owner and admins only)."""
    room, role = await visible_room(session, name=name, user_id=user_id)
    require_role(role, ADMIN_ROLES, "see its invitations")
    query = select(RoomInvitation).where(RoomInvitation.room_id == room.id)
    if cursor is not None:
        after = decode_id_cursor(_LIST, cursor)
        query = query.where(RoomInvitation.id < after)
    rows = list(
        (await session.scalars(query.order_by(RoomInvitation.id.desc()).limit(limit + 1))).all()
    )
    views = [await _view(session, invitation, room) for invitation in rows[:limit]]
    if len(rows) <= limit:
        return Page(views, None)
    return Page(views, encode_cursor(_LIST, views[-1].id))


async def revoke_invitation(
    session: AsyncSession, *, name: str, user_id: int, invitation_id: int
) -> None:
    """Withdraw a pending invitation (the room's owner and admins)."""
    room, role = await visible_room(session, name=name, user_id=user_id, lock=True)
    require_role(role, ADMIN_ROLES, "withdraw invitations")
    deleted = await session.scalar(
        delete(RoomInvitation)
        .where(RoomInvitation.id == invitation_id, RoomInvitation.room_id == room.id)
        .returning(RoomInvitation.id)
    )
    await session.commit()
    if deleted is None:
        raise NotFoundError("No such invitation.")
    ROOM_CHANGES.labels("invitation_revoked").inc()


async def _own_invitation(
    session: AsyncSession, *, invitation_id: int, user_id: int, lock: bool = False
) -> RoomInvitation:
    email = await session.scalar(select(User.email).where(User.id == user_id))
    query = select(RoomInvitation).where(
        RoomInvitation.id == invitation_id,
        _mine(user_id, email or ""),
    )
    if lock:
        query = query.with_for_update()
    invitation: RoomInvitation | None = await session.scalar(query)
    if invitation is None:
        raise NotFoundError("No such invitation.")
    return invitation


async def accept_invitation(
    session: AsyncSession, services: RoomServices, *, invitation_id: int, user_id: int
) -> Room:
    """Become a member with the invitation's role; the room, which you may join at once."""
    found = await _own_invitation(session, invitation_id=invitation_id, user_id=user_id)
    room_name = await session.scalar(select(Room.name).where(Room.id == found.room_id))
    # The room first, then the invitation: the order every other change locks them in.
    room = await load_room(session, room_name or "", lock=True)
    invitation = await _own_invitation(
        session, invitation_id=invitation_id, user_id=user_id, lock=True
    )
    await session.delete(invitation)
    if room is None:
        await session.commit()
        raise NotFoundError("The room no longer exists.")
    await add_member(session, services, room=room, user_id=user_id, role=invitation.role)
    ROOM_CHANGES.labels("invitation_accepted").inc()
    return room


async def decline_invitation(session: AsyncSession, *, invitation_id: int, user_id: int) -> None:
    """Turn an invitation down (it is deleted; the room's admins may invite again)."""
    invitation = await _own_invitation(
        session, invitation_id=invitation_id, user_id=user_id, lock=True
    )
    await session.delete(invitation)
    await session.commit()
    ROOM_CHANGES.labels("invitation_declined").inc()
