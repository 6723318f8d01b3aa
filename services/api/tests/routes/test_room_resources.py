"""Rooms as resources: create, read, change, delete; the lists; who learns what."""

from __future__ import annotations

import httpx
from arq.connections import ArqRedis

from chorus_common.events import EventBus, room_channel
from chorus_common.rooms import RoomDirectory, Verdict

from ..support import (
    Account,
    add_member,
    create_room,
    metric_value,
    new_account,
    room_name,
)


async def test_a_private_room_is_its_members_and_nobody_else(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    owner, outsider = await new_account(client, "owner"), await new_account(client, "outsider")
    name = room_name("private")
    created = await client.post(
        "/api/rooms",
        json={"name": name, "visibility": "private", "topic": "Plans"},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body == {
        "name": name,
        "kind": "room",
        "visibility": "private",
        "topic": "Plans",
        "owner": {"id": owner.id, "display_name": "Test User"},
        "role": "owner",
        "member_count": 1,
        "created_at": body["created_at"],
    }
    # Redis holds the access list every door reads, from the moment the room exists.
    directory = RoomDirectory(arq)
    assert (await directory.check(name, str(owner.id))).verdict is Verdict.MEMBER
    assert (await directory.check(name, str(outsider.id))).verdict is Verdict.DENIED

    # To an outsider the room is like a name nobody registered: not found; its content: 403.
    assert (await client.get(f"/api/rooms/{name}", headers=outsider.headers)).status_code == 404
    unregistered = await client.get(f"/api/rooms/{room_name()}", headers=outsider.headers)
    assert unregistered.status_code == 404
    history = await client.get(f"/api/rooms/{name}/messages", headers=outsider.headers)
    assert history.status_code == 403
    assert history.json()["error"]["code"] == "forbidden"
    members = await client.get(f"/api/rooms/{name}/members", headers=outsider.headers)
    assert members.status_code == 404
    assert (await client.get(f"/api/rooms/{name}/messages", headers=owner.headers)).json() == {
        "items": [],
        "next_cursor": None,
    }


async def test_names_in_use_and_reserved_names_are_refused(
    client: httpx.AsyncClient, account: Account, arq: ArqRedis
) -> None:
    name = await create_room(client, account)
    again = await client.post("/api/rooms", json={"name": name}, headers=account.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "room_name_taken"
    # A name people already talk in (it has history) cannot be taken over.
    used = room_name("used")
    await EventBus(arq, history_size=1000, history_ttl=86_400).publish(
        room_channel(used), "message", {"message": "hi"}, sender="1"
    )
    taken = await client.post("/api/rooms", json={"name": used}, headers=account.headers)
    assert taken.status_code == 409
    for bad in ({"name": "dm.1.2"}, {"name": "-x"}, {"name": "ok", "visibility": "secret"}):
        response = await client.post("/api/rooms", json=bad, headers=account.headers)
        assert response.status_code == 422, bad


async def test_owner_and_admins_change_a_room_members_do_not(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    owner, admin, member, outsider = [
        await new_account(client, n) for n in ("owner", "admin", "member", "outsider")
    ]
    name = await create_room(client, owner)
    await add_member(client, name, owner, admin, role="admin")
    await add_member(client, name, owner, member)
    refused = await client.patch(
        f"/api/rooms/{name}", json={"topic": "mine now"}, headers=member.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    topic = await client.patch(f"/api/rooms/{name}", json={"topic": "Q3"}, headers=admin.headers)
    assert topic.status_code == 200
    assert topic.json()["topic"] == "Q3"
    assert topic.json()["role"] == "admin"
    opened = await client.patch(
        f"/api/rooms/{name}", json={"visibility": "public", "topic": None}, headers=admin.headers
    )
    assert opened.json()["visibility"] == "public"
    assert opened.json()["topic"] is None
    # Public: everyone signed in reads it (and sees it, with no role of theirs).
    seen = await client.get(f"/api/rooms/{name}", headers=outsider.headers)
    assert seen.status_code == 200
    assert seen.json()["role"] is None
    assert seen.json()["member_count"] == 3
    assert (await RoomDirectory(arq).check(name, str(outsider.id))).verdict is Verdict.OPEN
    # Private again: the outsider is out at once, with the event that tells realtime so.
    closed = await client.patch(
        f"/api/rooms/{name}", json={"visibility": "private"}, headers=owner.headers
    )
    assert closed.json()["visibility"] == "private"
    assert (await RoomDirectory(arq).check(name, str(outsider.id))).verdict is Verdict.DENIED
    history = await EventBus(arq, history_size=1000, history_ttl=86_400).history(
        room_channel(name), "0-0"
    )
    updates = [e for e in history.events if b'"room.updated"' in e]
    assert b'"visibility":"private"' in updates[-1]


async def test_only_the_owner_deletes_and_the_name_stays_taken(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    owner, admin = await new_account(client, "owner"), await new_account(client, "admin")
    name = await create_room(client, owner, visibility="public")
    await add_member(client, name, owner, admin, role="admin")
    await EventBus(arq, history_size=1000, history_ttl=86_400).publish(
        room_channel(name), "message", {"message": "old"}, sender="1"
    )
    assert (await client.delete(f"/api/rooms/{name}", headers=admin.headers)).status_code == 403
    assert (await client.delete(f"/api/rooms/{name}", headers=owner.headers)).status_code == 204
    assert (await client.get(f"/api/rooms/{name}", headers=owner.headers)).status_code == 404
    # Its history is gone, nobody reads the name any more, and nobody registers it again.
    assert await arq.exists(f"chorus:stream:room:{name}") == 0
    assert (await RoomDirectory(arq).check(name, str(owner.id))).verdict is Verdict.DENIED
    read = await client.get(f"/api/rooms/{name}/messages", headers=owner.headers)
    assert read.status_code == 403
    again = await client.post("/api/rooms", json={"name": name}, headers=admin.headers)
    assert again.json()["error"]["code"] == "room_name_taken"


async def test_my_rooms_and_the_public_directory(client: httpx.AsyncClient) -> None:
    owner, other = await new_account(client, "owner"), await new_account(client, "other")
    stem = room_name("Dir")
    names = [f"{stem}-a", f"{stem}-B", f"{stem}-c"]
    for name in names:
        await create_room(client, owner, visibility="public", name=name)
    hidden = await create_room(client, owner, visibility="private", name=f"{stem}-hidden")
    mine = await client.get("/api/rooms", params={"limit": 2}, headers=owner.headers)
    first = mine.json()
    assert [r["name"] for r in first["items"]] == [hidden, names[2]]  # newest first
    rest = await client.get(
        "/api/rooms", params={"cursor": first["next_cursor"]}, headers=owner.headers
    )
    assert [r["name"] for r in rest.json()["items"]] == [names[1], names[0]]
    assert rest.json()["next_cursor"] is None
    # The directory: public rooms only, a case-insensitive prefix, alphabetical, in pages.
    found: list[str] = []
    params = {"scope": "public", "prefix": stem.lower(), "limit": 2}
    while True:
        page = (await client.get("/api/rooms", params=params, headers=other.headers)).json()
        found += [r["name"] for r in page["items"]]
        assert all(r["role"] is None for r in page["items"])
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert found == names
    assert (await client.get("/api/rooms", headers=other.headers)).json()["items"] == []
    bad = await client.get(
        "/api/rooms", params={"scope": "public", "prefix": "a%"}, headers=other.headers
    )
    assert bad.status_code == 422


async def test_owning_too_many_rooms_is_refused_and_counted(client: httpx.AsyncClient) -> None:
    owner = await new_account(client, "hoarder")
    before = metric_value(
        (await client.get("/metrics")).text,
        "chorus_api_room_refusals_total",
        reason="rooms_per_owner",
    )
    for _ in range(4):  # ROOMS_MAX_OWNED in the tests' settings
        await create_room(client, owner)
    refused = await client.post("/api/rooms", json={"name": room_name()}, headers=owner.headers)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "limit_reached"
    assert error["details"] == [{"limit": "rooms_per_owner", "maximum": 4}]
    after = metric_value(
        (await client.get("/metrics")).text,
        "chorus_api_room_refusals_total",
        reason="rooms_per_owner",
    )
    assert after == before + 1


async def test_joining_a_public_room_lists_it_among_mine(client: httpx.AsyncClient) -> None:
    owner, walker = await new_account(client, "owner"), await new_account(client, "walker")
    public = await create_room(client, owner, visibility="public")
    private = await create_room(client, owner)
    joined = await client.post(f"/api/rooms/{public}/join", headers=walker.headers)
    assert joined.status_code == 200
    assert joined.json()["role"] == "member"
    assert joined.json()["member_count"] == 2
    refused = await client.post(f"/api/rooms/{private}/join", headers=walker.headers)
    assert refused.status_code == 404
    mine = await client.get("/api/rooms", headers=walker.headers)
    assert [r["name"] for r in mine.json()["items"]] == [public]
