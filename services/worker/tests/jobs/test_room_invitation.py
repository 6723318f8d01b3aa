"""send_room_invitation_email: the invitee hears of an invitation once, with nothing linkable."""

from __future__ import annotations

import os

from chorus_devstack.servers import RunningSmtpSink
from chorus_schema.models import Room, RoomInvitation, User

from ..harness import Harness, dead_lettered, metric, running_worker


async def _invitation(
    harness: Harness, *, room: str, inviter_name: str, email: str | None, invitee: User | None
) -> RoomInvitation:
    async with harness.sessions.begin() as session:
        inviter = User(
            email=f"inviter-{os.urandom(3).hex()}@example.com",
            full_name=inviter_name,
            password_hash="x",
        )
        session.add(inviter)
        await session.flush()
        row = Room(name=room, visibility="private", kind="room", owner_id=inviter.id)
        session.add(row)
        await session.flush()
        invitation = RoomInvitation(
            room_id=row.id,
            email=email,
            user_id=invitee.id if invitee is not None else None,
            role="member",
            invited_by=inviter.id,
        )
        session.add(invitation)
    return invitation


async def test_an_address_is_told_who_invited_it_where(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    room = f"design-{os.urandom(3).hex()}"
    invitation = await _invitation(
        harness, room=room, inviter_name="Ada Lovelace", email="grace@example.com", invitee=None
    )
    sent_before = metric("chorus_worker_emails_sent_total")
    job_id = f"room-invitation:{invitation.id}"
    async with running_worker(harness.settings):
        result = await harness.outcome(
            await harness.enqueue("send_room_invitation_email", invitation.id, _job_id=job_id)
        )
        # A redelivery (a replay, a worker killed after the send): no second mail.
        again = await harness.outcome(
            await harness.enqueue("send_room_invitation_email", invitation.id, _job_id=job_id + "r")
        )
    assert result["status"] == "sent"
    assert again["status"] == "sent"  # another job id is another mail; the api never does that
    mails = smtp.messages()
    assert [m["rcpt_to"] for m in mails] == [["grace@example.com"], ["grace@example.com"]]
    text = str(mails[0]["text"])
    assert mails[0]["subject"] == "You are invited to a room on Chorus"
    assert f"Ada Lovelace invited you to the room {room} on Chorus" in text
    assert harness.settings.app_url in text
    assert metric("chorus_worker_emails_sent_total") == sent_before + 2


async def test_linkable_names_stay_out_and_a_job_mails_once(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    async with harness.sessions.begin() as session:
        invitee = User(email="member@example.com", full_name="M", password_hash="x")
        session.add(invitee)
    room = f"win-prizes.example.com.{os.urandom(2).hex()}"[:64]
    invitation = await _invitation(
        harness,
        room=room,
        inviter_name="Claim at http://evil.example",
        email=None,
        invitee=invitee,
    )
    job_id = f"room-invitation:{invitation.id}"
    async with running_worker(harness.settings):
        first = await harness.outcome(
            await harness.enqueue("send_room_invitation_email", invitation.id, _job_id=job_id)
        )
    assert first["status"] == "sent"
    [mail] = smtp.messages()
    text = str(mail["text"])
    assert mail["rcpt_to"] == ["member@example.com"]  # by account: the account's address
    assert "Someone invited you to a room on Chorus" in text
    assert "evil" not in text
    assert "example.com." not in text
    await harness.queue.delete(f"arq:result:{job_id}")
    async with running_worker(harness.settings):
        repeated = await harness.outcome(
            await harness.enqueue("send_room_invitation_email", invitation.id, _job_id=job_id)
        )
        gone = await harness.outcome(await harness.enqueue("send_room_invitation_email", 987654))
        bad = await harness.outcome(await harness.enqueue("send_room_invitation_email", "x"))
    assert repeated == {"status": "already_sent"}
    assert gone == {"status": "skipped", "reason": "no such invitation"}
    assert dead_lettered(bad)
    assert len(smtp.messages()) == 1
