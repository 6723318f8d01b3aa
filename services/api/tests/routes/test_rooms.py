"""Room history: stored messages, newest first, paged back in time."""

from __future__ import annotations

import os

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_schema.models import RoomMessage

from ..support import Account, room_message


async def _room_with_messages(
    sessions: async_sessionmaker[AsyncSession], account: Account, count: int
) -> str:
    room = f"room-{os.urandom(3).hex()}"
    rows = [
        room_message(room, 1_764_300_000_000 + i // 2, i % 2, sender=str(account.id), text=f"m{i}")
        for i in range(count)
    ]
    rows.append(room_message(f"other-{room}", 1_764_300_000_000, 9, sender="1", text="other room"))
    async with sessions.begin() as session:
        await session.execute(insert(RoomMessage), rows)
    return room


async def test_history_newest_first_in_pages(
    client: httpx.AsyncClient, account: Account, sessions: async_sessionmaker[AsyncSession]
) -> None:
    room = await _room_with_messages(sessions, account, 7)
    first = await client.get(f"/api/rooms/{room}/messages?limit=3", headers=account.headers)
    assert first.status_code == 200
    page = first.json()
    assert [m["data"]["message"] for m in page["items"]] == ["m6", "m5", "m4"]
    newest = page["items"][0]
    assert newest == {
        "id": "1764300000003-0",
        "channel": f"room:{room}",
        "type": "message",
        "data": {"message": "m6"},
        "ts": "2025-11-28T03:20:00.003Z",
        "from": str(account.id),
    }
    texts = [m["data"]["message"] for m in page["items"]]
    while page["next_cursor"]:
        page = (
            await client.get(
                f"/api/rooms/{room}/messages",
                params={"limit": 3, "cursor": page["next_cursor"]},
                headers=account.headers,
            )
        ).json()
        texts += [m["data"]["message"] for m in page["items"]]
    assert texts == [f"m{i}" for i in range(6, -1, -1)]


async def test_before_a_stream_id(
    client: httpx.AsyncClient, account: Account, sessions: async_sessionmaker[AsyncSession]
) -> None:
    room = await _room_with_messages(sessions, account, 5)
    response = await client.get(
        f"/api/rooms/{room}/messages",
        params={"before": "1764300000001-1"},
        headers=account.headers,
    )
    assert [m["id"] for m in response.json()["items"]] == [
        "1764300000001-0",
        "1764300000000-1",
        "1764300000000-0",
    ]
    assert response.json()["next_cursor"] is None


async def test_empty_and_invalid(client: httpx.AsyncClient, account: Account) -> None:
    empty = await client.get("/api/rooms/nobody-here/messages", headers=account.headers)
    assert empty.json() == {"items": [], "next_cursor": None}
    for path in (
        "/api/rooms/-bad/messages",
        f"/api/rooms/{'x' * 65}/messages",
        "/api/rooms/lobby/messages?before=yesterday",
        "/api/rooms/lobby/messages?before=99999999999999999999-0",
        "/api/rooms/lobby/messages?cursor=bm9wZQ",
        "/api/rooms/lobby/messages?limit=1000",
    ):
        response = await client.get(path, headers=account.headers)
        assert response.status_code == 422, path
    assert (await client.get("/api/rooms/lobby/messages")).status_code == 401
