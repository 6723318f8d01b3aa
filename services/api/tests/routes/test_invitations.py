"""Invitations: by account or address, accepted or declined; one mail each, within limits."""

from __future__ import annotations

import httpx
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_common.rooms import RoomDirectory, Verdict
from chorus_schema.models import Notification

from ..support import (
    PASSWORD,
    add_member,
    create_room,
    login,
    metric_value,
    new_account,
    register,
    room_name,
    unique_email,
)


async def _metrics(client: httpx.AsyncClient) -> str:
    return (await client.get("/metrics")).text


async def test_an_address_without_an_account_keeps_its_invitation_until_sign_up(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    owner = await new_account(client, "owner")
    name = await create_room(client, owner)
    email = unique_email("newcomer")
    invited = await client.post(
        f"/api/rooms/{name}/invitations", json={"email": email.upper()}, headers=owner.headers
    )
    assert invited.status_code == 201, invited.text
    invitation = invited.json()
    assert invitation["email"] == email  # stored lower-cased
    assert invitation["user"] is None
    assert invitation["inviter"] == "Test User"
    assert invitation["role"] == "member"
    # Its mail is queued for the worker, once per invitation.
    job = await arq.get(f"chorus:job-owner:room-invitation:{invitation['id']}")
    assert job == str(owner.id).encode()
    assert await arq.exists(f"arq:job:room-invitation:{invitation['id']}") == 1
    again = await client.post(
        f"/api/rooms/{name}/invitations", json={"email": email}, headers=owner.headers
    )
    assert again.status_code == 200
    assert again.json()["id"] == invitation["id"]
    listed = await client.get(f"/api/rooms/{name}/invitations", headers=owner.headers)
    assert [i["id"] for i in listed.json()["items"]] == [invitation["id"]]

    # The person signs up with that address: the invitation is theirs; accepting opens it.
    await register(client, email)
    token = (await login(client, email)).json()["access_token"]
    newcomer = {"Authorization": f"Bearer {token}"}
    mine = (await client.get("/api/invitations", headers=newcomer)).json()
    assert [(i["id"], i["room"], i["visibility"]) for i in mine] == [
        (invitation["id"], name, "private")
    ]
    me = (await client.get("/api/users/me", headers=newcomer)).json()
    assert (await RoomDirectory(arq).check(name, str(me["id"]))).verdict is Verdict.DENIED
    accepted = await client.post(f"/api/invitations/{invitation['id']}/accept", headers=newcomer)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["role"] == "member"
    assert accepted.json()["member_count"] == 2
    # Adding a member lets them in at once.
    assert (await RoomDirectory(arq).check(name, str(me["id"]))).verdict is Verdict.MEMBER
    assert (await client.get("/api/invitations", headers=newcomer)).json() == []
    history = await arq.xrange(f"chorus:stream:room:{name}")
    added = [fields[b"e"] for _, fields in history if b'"member.added"' in fields[b"e"]]
    assert f'"user_id":"{me["id"]}"'.encode() in added[-1]


async def test_an_account_is_notified_and_may_decline(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    owner, guest = await new_account(client, "owner"), await new_account(client, "guest")
    name = await create_room(client, owner)
    invited = await client.post(
        f"/api/rooms/{name}/invitations", json={"user_id": guest.id}, headers=owner.headers
    )
    assert invited.status_code == 201
    assert invited.json()["user"] == {"id": guest.id, "display_name": "Test User"}
    assert invited.json()["email"] is None  # the inviter never learns the invitee's address
    async with sessions() as session:
        told = (
            await session.scalars(
                select(Notification).where(
                    Notification.user_id == guest.id, Notification.type == "room.invited"
                )
            )
        ).all()
    assert [n.data["room"] for n in told] == [name]
    # Someone else cannot accept it; the invitee declines it.
    stranger = await new_account(client, "stranger")
    stolen = await client.post(
        f"/api/invitations/{invited.json()['id']}/accept", headers=stranger.headers
    )
    assert stolen.status_code == 404
    declined = await client.delete(
        f"/api/invitations/{invited.json()['id']}", headers=guest.headers
    )
    assert declined.status_code == 204
    assert (await client.get("/api/invitations", headers=guest.headers)).json() == []
    members = await client.get(f"/api/rooms/{name}/members", headers=owner.headers)
    assert [m["user_id"] for m in members.json()["items"]] == [owner.id]


async def test_who_may_invite_whom(client: httpx.AsyncClient) -> None:
    owner, admin, member, guest = [
        await new_account(client, n) for n in ("owner", "admin", "member", "guest")
    ]
    name = await create_room(client, owner)
    await add_member(client, name, owner, admin, role="admin")
    await add_member(client, name, owner, member)
    by_member = await client.post(
        f"/api/rooms/{name}/invitations", json={"user_id": guest.id}, headers=member.headers
    )
    assert by_member.status_code == 403
    admin_by_admin = await client.post(
        f"/api/rooms/{name}/invitations",
        json={"user_id": guest.id, "role": "admin"},
        headers=admin.headers,
    )
    assert admin_by_admin.status_code == 403
    twice = await client.post(
        f"/api/rooms/{name}/invitations", json={"user_id": member.id}, headers=admin.headers
    )
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "already_member"
    nobody = await client.post(
        f"/api/rooms/{name}/invitations", json={"user_id": 2**62}, headers=owner.headers
    )
    assert nobody.status_code == 404
    for bad in ({}, {"email": "a@example.com", "user_id": 3}, {"email": "nope"}, {"user_id": "3"}):
        response = await client.post(
            f"/api/rooms/{name}/invitations", json=bad, headers=owner.headers
        )
        assert response.status_code == 422, bad
    # Withdrawn by an admin: the invitee no longer sees it.
    invited = await client.post(
        f"/api/rooms/{name}/invitations", json={"user_id": guest.id}, headers=admin.headers
    )
    withdrawn = await client.delete(
        f"/api/rooms/{name}/invitations/{invited.json()['id']}", headers=admin.headers
    )
    assert withdrawn.status_code == 204
    assert (await client.get("/api/invitations", headers=guest.headers)).json() == []


async def test_invitation_limits_refuse_and_count(client: httpx.AsyncClient) -> None:
    owner = await new_account(client, "inviter")
    name = await create_room(client, owner)
    before = await _metrics(client)
    # ROOM_MAX_PENDING_INVITATIONS = 4 in the tests' settings.
    for _ in range(4):
        response = await client.post(
            f"/api/rooms/{name}/invitations",
            json={"email": unique_email("pending")},
            headers=owner.headers,
        )
        assert response.status_code == 201
    full = await client.post(
        f"/api/rooms/{name}/invitations",
        json={"email": unique_email("pending")},
        headers=owner.headers,
    )
    assert full.status_code == 409
    assert full.json()["error"]["details"] == [{"limit": "pending_invitations", "maximum": 4}]
    # ROOM_INVITATIONS_PER_HOUR = 6: two more (in another room), then 429.
    other = await create_room(client, owner)
    for _ in range(2):
        response = await client.post(
            f"/api/rooms/{other}/invitations",
            json={"email": unique_email("rate")},
            headers=owner.headers,
        )
        assert response.status_code == 201
    limited = await client.post(
        f"/api/rooms/{other}/invitations",
        json={"email": unique_email("rate")},
        headers=owner.headers,
    )
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "too_many_invitations"
    assert 3000 < int(limited.headers["retry-after"]) <= 3600
    after = await _metrics(client)
    for reason in ("pending_invitations", "invitations_rate"):
        assert metric_value(after, "chorus_api_room_refusals_total", reason=reason) == (
            metric_value(before, "chorus_api_room_refusals_total", reason=reason) + 1
        )


async def test_one_address_gets_few_invitation_mails_a_day(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    email = unique_email("popular")
    before = await _metrics(client)
    ids = []
    # ROOM_INVITATION_MAILS_PER_ADDRESS_PER_DAY = 2: three rooms invite the same address.
    for prefix in ("one", "two", "three"):
        owner = await new_account(client, prefix)
        name = await create_room(client, owner, name=room_name(prefix))
        invited = await client.post(
            f"/api/rooms/{name}/invitations", json={"email": email}, headers=owner.headers
        )
        assert invited.status_code == 201  # invited all the same
        ids.append(invited.json()["id"])
    queued = [await arq.exists(f"arq:job:room-invitation:{i}") for i in ids]
    assert queued == [1, 1, 0]
    after = await _metrics(client)
    mails = "chorus_api_room_invitation_mails_total"
    assert metric_value(after, mails, outcome="suppressed") == (
        metric_value(before, mails, outcome="suppressed") + 1
    )
    # The address's owner still finds all three once signed up.
    await register(client, email, PASSWORD)
    token = (await login(client, email)).json()["access_token"]
    mine = await client.get("/api/invitations", headers={"Authorization": f"Bearer {token}"})
    assert sorted(i["id"] for i in mine.json()) == sorted(ids)
