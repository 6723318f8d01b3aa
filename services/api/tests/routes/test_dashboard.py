"""The dashboard: user, stats and recent notifications, as the user's actions left them."""

from __future__ import annotations

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_schema.models import RoomMessage

from ..support import Account, new_account, room_message


async def test_fresh_account(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get("/api/dashboard", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"user", "stats", "notifications"}
    assert body["user"]["id"] == account.id
    assert body["user"]["email"] == account.email
    assert body["stats"] == {"orders": 0, "total_spent_cents": 0, "messages_sent": 0}
    assert body["notifications"] == []


async def test_stats_and_notifications(
    client: httpx.AsyncClient,
    account: Account,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    amounts = [1000, 250, 4000, 7, 99, 1, 1, 1, 1, 1, 1]
    ids = []
    for amount in amounts:
        response = await client.post(
            "/api/orders",
            json={"item": "thing", "quantity": 1, "amount_cents": amount},
            headers=account.headers,
        )
        ids.append(response.json()["id"])
    cancelled = await client.patch(
        f"/api/orders/{ids[2]}", json={"status": "cancelled"}, headers=account.headers
    )
    assert cancelled.status_code == 200
    other = await new_account(client, "neighbour")
    async with sessions.begin() as session:
        await session.execute(
            insert(RoomMessage),
            [
                room_message("lobby", 1_000, sender=str(account.id), text="one"),
                room_message("lobby", 1_001, sender=str(account.id), text="two"),
                room_message("dev", 1_002, sender=str(account.id), text="three"),
                room_message("lobby", 1_003, sender="assistant", text="ai", type_="ai.done"),
                room_message("lobby", 1_004, sender=str(other.id), text="not mine"),
            ],
        )

    body = (await client.get("/api/dashboard", headers=account.headers)).json()
    assert body["stats"] == {
        "orders": len(amounts),
        "total_spent_cents": sum(amounts) - 4000,  # the cancelled order does not count
        "messages_sent": 3,
    }
    notifications = body["notifications"]
    assert len(notifications) == 10  # the ten newest of twelve
    assert notifications[0]["type"] == "order.updated"
    assert notifications[0]["data"]["order"]["status"] == "cancelled"
    assert [n["id"] for n in notifications] == sorted(
        (n["id"] for n in notifications), reverse=True
    )
    assert set(notifications[1]) == {"id", "type", "data", "created_at", "read_at"}
    assert notifications[1]["data"]["order"]["id"] == ids[-1]
