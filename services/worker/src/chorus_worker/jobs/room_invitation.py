"""``send_room_invitation_email(invitation_id)``: tell an invitee about a room invitation.

The api enqueues it as ``room-invitation:<invitation id>`` after the invitation is
committed, within its limits (invitations per inviter per hour, invitation mails per
address per day), so every mail here was asked for by an owner or admin of a room — but
may reach a stranger, from our domain. So, as for the welcome mail, nothing anyone typed
goes in unless it cannot become a link or a trick (``greeting_name``): the inviter's
display name and the room's name appear only when safe (a room called ``example.com``
is named "a room"), and the mail asks the reader to open Chorus themselves, where the
invitation waits — an account at this address sees it, someone without one finds it
after signing up with the address.

An invitation accepted, declined or withdrawn before the job runs needs no mail
(``skipped``). A sent mail is remembered in Redis under the job id, so a redelivered job
does not mail again (the same window as the welcome mail: a worker killed between the
server's 250 and that write sends it twice).
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Any, Final

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import aliased

from chorus_schema.models import Room, RoomInvitation, User
from chorus_worker.deps import JobContext, resources
from chorus_worker.domain.mail import notice, send_from_job
from chorus_worker.jobs.arguments import valid_id
from chorus_worker.jobs.welcome import greeting_name
from chorus_worker.metrics import EMAILS_SENT
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["render_room_invitation", "send_room_invitation_email"]

logger = logging.getLogger("chorus.worker.room_invitation")

SUBJECT: Final = "You are invited to a room on Chorus"
_SENT_TTL_SECONDS: Final = 7 * 86_400


def render_room_invitation(
    *, email: str, room: str, inviter: str | None, settings: WorkerServiceSettings
) -> EmailMessage:
    """The invitation mail to ``email``: who asked (if safe), which room (if safe), where."""
    who = greeting_name(inviter or "") or "Someone"
    where = f"the room {safe}" if (safe := greeting_name(room)) else "a room"
    message = notice(settings, to=email, subject=SUBJECT, kind="room-invitation")
    message.set_content(
        "Hi,\n\n"
        f"{who} invited you to {where} on Chorus.\n\n"
        f"Open {settings.app_url} and log in — or sign up with this e-mail address — to\n"
        "accept or decline the invitation. If you did not expect it, ignore this mail:\n"
        "nothing happens unless you accept.\n\n"
        "— The Chorus team\n"
    )
    return message


async def send_room_invitation_email(ctx: JobContext, invitation_id: int) -> dict[str, Any]:
    """Mail the invitee of invitation ``invitation_id``, once."""
    iid = valid_id(invitation_id, "invitation_id")
    found = resources(ctx)
    job_id = str(ctx.get("job_id", f"room-invitation:{iid}"))
    sent_key = f"chorus:room-invitation:sent:{job_id}"
    if await found.redis.get(sent_key) is not None:
        return {"status": "already_sent"}
    invitee = aliased(User)
    inviter = aliased(User)
    async with found.sessions() as session:
        row = (
            await session.execute(
                select(RoomInvitation.email, invitee.email, Room.name, inviter.full_name)
                .join(Room, Room.id == RoomInvitation.room_id)
                .outerjoin(invitee, invitee.id == RoomInvitation.user_id)
                .outerjoin(inviter, inviter.id == RoomInvitation.invited_by)
                .where(RoomInvitation.id == iid, Room.deleted_at.is_(None))
            )
        ).one_or_none()
    if row is None:
        return {"status": "skipped", "reason": "no such invitation"}
    address = row[0] or row[1]
    if not address:
        return {"status": "skipped", "reason": "no address"}
    message = render_room_invitation(
        email=address, room=row[2], inviter=row[3], settings=found.settings
    )
    await send_from_job(found.mailer, message)
    EMAILS_SENT.inc()
    message_id = str(message["Message-ID"])
    try:
        await found.redis.set(sent_key, message_id, ex=_SENT_TTL_SECONDS)
    except RedisError as exc:
        logger.warning("could not remember the sent invitation mail: %s", exc)
    logger.info("room invitation mail sent", extra={"invitation_id": iid, "message_id": message_id})
    return {"status": "sent", "message_id": message_id}
