"""Members: display names never e-mails, roles, removal and leaving take access at once."""

from __future__ import annotations

import httpx
import orjson
from arq.connections import ArqRedis

from chorus_common.rooms import RoomDirectory, Verdict

from ..support import add_member, create_room, metric_value, new_account


async def _stream_events(arq: ArqRedis, room: str, kind: str) -> list[dict[str, object]]:
    entries = await arq.xrange(f"chorus:stream:room:{room}")
    events = [orjson.loads(fields[b"e"]) for _, fields in entries]
    return [e for e in events if e["type"] == kind]


async def test_members_are_listed_by_name_and_role_never_by_address(
    client: httpx.AsyncClient,
) -> None:
    owner, admin, member = [await new_account(client, n) for n in ("owner", "admin", "member")]
    name = await create_room(client, owner)
    await add_member(client, name, owner, admin, role="admin")
    await add_member(client, name, owner, member)
    first = await client.get(f"/api/rooms/{name}/members?limit=2", headers=member.headers)
    page = first.json()
    rest = await client.get(
        f"/api/rooms/{name}/members", params={"cursor": page["next_cursor"]}, headers=member.headers
    )
    listed = page["items"] + rest.json()["items"]
    assert [(m["user_id"], m["role"]) for m in listed] == [
        (owner.id, "owner"),
        (admin.id, "admin"),
        (member.id, "member"),
    ]
    assert all(m["display_name"] == "Test User" for m in listed)
    assert "@" not in first.text + rest.text
    profile = await client.get(f"/api/users/{admin.id}/profile", headers=member.headers)
    assert profile.json() == {"id": admin.id, "display_name": "Test User"}
    missing = await client.get(f"/api/users/{2**62}/profile", headers=member.headers)
    assert missing.status_code == 404


async def test_removal_takes_access_away_with_the_event_realtime_acts_on(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    owner, admin, member, other = [
        await new_account(client, n) for n in ("owner", "admin", "member", "other")
    ]
    name = await create_room(client, owner)
    for person, role in ((admin, "admin"), (member, "member"), (other, "member")):
        await add_member(client, name, owner, person, role=role)
    directory = RoomDirectory(arq)
    before = (await directory.check(name, str(member.id))).version
    # Members may not remove; admins may not remove admins; nobody removes the owner.
    by_member = await client.delete(f"/api/rooms/{name}/members/{other.id}", headers=member.headers)
    assert by_member.status_code == 403
    admin_out = await client.delete(f"/api/rooms/{name}/members/{owner.id}", headers=admin.headers)
    assert admin_out.status_code == 403
    removed = await client.delete(f"/api/rooms/{name}/members/{member.id}", headers=admin.headers)
    assert removed.status_code == 204
    after = await directory.check(name, str(member.id))
    assert after.verdict is Verdict.DENIED
    assert after.version > before
    [event] = await _stream_events(arq, name, "member.removed")
    assert event["data"] == {
        "user_id": str(member.id),
        "reason": "removed",
        "private": True,
        "version": after.version,
    }
    gone = await client.get(f"/api/rooms/{name}/messages", headers=member.headers)
    assert gone.status_code == 403
    again = await client.delete(f"/api/rooms/{name}/members/{member.id}", headers=admin.headers)
    assert again.status_code == 404
    # Leaving works the same way; the owner hands the room over before leaving.
    assert (
        await client.delete(f"/api/rooms/{name}/members/{other.id}", headers=other.headers)
    ).status_code == 204
    left = await _stream_events(arq, name, "member.removed")
    assert left[-1]["data"]["reason"] == "left"
    stays = await client.delete(f"/api/rooms/{name}/members/{owner.id}", headers=owner.headers)
    assert stays.status_code == 409
    assert stays.json()["error"]["code"] == "owner_cannot_leave"


async def test_the_owner_hands_the_room_over(client: httpx.AsyncClient, arq: ArqRedis) -> None:
    owner, heir = await new_account(client, "owner"), await new_account(client, "heir")
    name = await create_room(client, owner)
    await add_member(client, name, owner, heir)
    promoted = await client.patch(
        f"/api/rooms/{name}/members/{heir.id}", json={"role": "admin"}, headers=owner.headers
    )
    assert promoted.json()["role"] == "admin"
    by_admin = await client.patch(
        f"/api/rooms/{name}/members/{owner.id}", json={"role": "member"}, headers=heir.headers
    )
    assert by_admin.status_code == 403
    handed = await client.patch(
        f"/api/rooms/{name}/members/{heir.id}", json={"role": "owner"}, headers=owner.headers
    )
    assert handed.json()["role"] == "owner"
    room = (await client.get(f"/api/rooms/{name}", headers=owner.headers)).json()
    assert room["owner"]["id"] == heir.id
    assert room["role"] == "admin"
    [update] = [
        e for e in await _stream_events(arq, name, "member.updated") if e["data"]["role"] == "owner"
    ]
    assert update["data"]["previous_owner"] == str(owner.id)
    assert (
        await client.delete(f"/api/rooms/{name}/members/{owner.id}", headers=owner.headers)
    ).status_code == 204
    assert (await client.get(f"/api/rooms/{name}", headers=owner.headers)).status_code == 404


async def test_a_full_room_takes_nobody_else(client: httpx.AsyncClient) -> None:
    owner = await new_account(client, "owner")
    name = await create_room(client, owner)
    people = [await new_account(client, f"m{n}") for n in range(4)]
    for person in people[:3]:  # ROOM_MAX_MEMBERS = 4 in the tests' settings, owner included
        await add_member(client, name, owner, person)
    invited = await client.post(
        f"/api/rooms/{name}/invitations", json={"user_id": people[3].id}, headers=owner.headers
    )
    before = metric_value(
        (await client.get("/metrics")).text,
        "chorus_api_room_refusals_total",
        reason="members_per_room",
    )
    accepted = await client.post(
        f"/api/invitations/{invited.json()['id']}/accept", headers=people[3].headers
    )
    assert accepted.status_code == 409
    assert accepted.json()["error"]["details"] == [{"limit": "members_per_room", "maximum": 4}]
    after = metric_value(
        (await client.get("/metrics")).text,
        "chorus_api_room_refusals_total",
        reason="members_per_room",
    )
    assert after == before + 1


async def test_read_marks_move_forward_only(client: httpx.AsyncClient) -> None:
    owner, outsider = await new_account(client, "owner"), await new_account(client, "outsider")
    name = await create_room(client, owner)
    for stream_id in ("5-0", "3-0"):
        response = await client.post(
            f"/api/rooms/{name}/read", json={"id": stream_id}, headers=owner.headers
        )
        assert response.status_code == 204
    refused = await client.post(
        f"/api/rooms/{name}/read", json={"id": "5-0"}, headers=outsider.headers
    )
    assert refused.status_code == 404
    bad = await client.post(f"/api/rooms/{name}/read", json={"id": "soon"}, headers=owner.headers)
    assert bad.status_code == 422
