"""Direct messages: one room per pair however it is opened, its two members only, unread counts."""

from __future__ import annotations

import asyncio

import httpx
from arq.connections import ArqRedis
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_common.rooms import RoomDirectory, Verdict, dm_room
from chorus_schema.models import RoomMessage

from ..support import metric_value, new_account, room_message


async def test_opening_a_conversation_twice_at_once_makes_one_room(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    ada, bob, eve = [await new_account(client, n) for n in ("ada", "bob", "eve")]
    opened = await asyncio.gather(
        *(
            client.post("/api/dms", json={"user_id": b.id}, headers=a.headers)
            for a, b in [(ada, bob), (bob, ada)] * 4
        )
    )
    assert sorted(r.status_code for r in opened) == [200] * 7 + [201]
    name = dm_room(ada.id, bob.id)
    assert {r.json()["name"] for r in opened} == {name}
    room = opened[0].json()
    assert room["kind"] == "dm"
    assert room["visibility"] == "private"
    assert room["member_count"] == 2
    # Exactly those two: the third person reads nothing, joins nothing.
    directory = RoomDirectory(arq)
    verdicts = {u.id: (await directory.check(name, str(u.id))).verdict for u in (ada, bob, eve)}
    assert verdicts == {ada.id: Verdict.MEMBER, bob.id: Verdict.MEMBER, eve.id: Verdict.DENIED}
    assert (await client.get(f"/api/rooms/{name}/messages", headers=eve.headers)).status_code == 403
    assert (await client.get(f"/api/rooms/{name}", headers=eve.headers)).status_code == 404
    # A direct-message room is not anyone's to change, widen or leave.
    for method, path, body in (
        ("PATCH", f"/api/rooms/{name}", {"visibility": "public"}),
        ("POST", f"/api/rooms/{name}/invitations", {"user_id": eve.id}),
    ):
        response = await client.request(method, path, json=body, headers=ada.headers)
        assert response.status_code == 409, path
    assert (await client.delete(f"/api/rooms/{name}", headers=ada.headers)).status_code == 409
    assert (
        await client.delete(f"/api/rooms/{name}/members/{ada.id}", headers=ada.headers)
    ).status_code == 409


async def test_unread_counts_follow_the_read_mark(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ada, bob = await new_account(client, "ada"), await new_account(client, "bob")
    name = (await client.post("/api/dms", json={"user_id": bob.id}, headers=ada.headers)).json()[
        "name"
    ]
    rows = [
        room_message(name, 1_764_300_000_000 + i, sender=str(bob.id), text=f"b{i}")
        for i in range(3)
    ]
    rows.append(room_message(name, 1_764_300_000_010, sender=str(ada.id), text="mine"))
    async with sessions.begin() as session:
        await session.execute(insert(RoomMessage), rows)
    [conversation] = (await client.get("/api/dms", headers=ada.headers)).json()["items"]
    assert conversation["room"] == name
    assert conversation["peer"] == {"id": bob.id, "display_name": "Test User"}
    assert conversation["unread"] == 3  # Bob's three; her own message is not unread
    assert conversation["last_message_at"].startswith("2025-11-28T03:20:00.010")
    await client.post(
        f"/api/rooms/{name}/read", json={"id": "1764300000001-0"}, headers=ada.headers
    )
    [after] = (await client.get("/api/dms", headers=ada.headers)).json()["items"]
    assert after["unread"] == 1
    [bobs] = (await client.get("/api/dms", headers=bob.headers)).json()["items"]
    assert bobs["peer"]["id"] == ada.id
    assert bobs["unread"] == 1


async def test_who_cannot_be_talked_to_and_how_many_new_conversations(
    client: httpx.AsyncClient,
) -> None:
    talker = await new_account(client, "talker")
    assert (
        await client.post("/api/dms", json={"user_id": talker.id}, headers=talker.headers)
    ).status_code == 422
    assert (
        await client.post("/api/dms", json={"user_id": 2**62}, headers=talker.headers)
    ).status_code == 404
    before = metric_value(
        (await client.get("/metrics")).text, "chorus_api_room_refusals_total", reason="dms_rate"
    )
    others = [await new_account(client, f"p{n}") for n in range(5)]
    for other in others[:4]:  # DM_OPENS_PER_HOUR = 4 in the tests' settings
        response = await client.post("/api/dms", json={"user_id": other.id}, headers=talker.headers)
        assert response.status_code == 201
    limited = await client.post("/api/dms", json={"user_id": others[4].id}, headers=talker.headers)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "too_many_conversations"
    assert int(limited.headers["retry-after"]) > 0
    # Reopening an existing conversation is not a new one.
    reopened = await client.post("/api/dms", json={"user_id": others[0].id}, headers=talker.headers)
    assert reopened.status_code == 200
    after = metric_value(
        (await client.get("/metrics")).text, "chorus_api_room_refusals_total", reason="dms_rate"
    )
    assert after == before + 1
