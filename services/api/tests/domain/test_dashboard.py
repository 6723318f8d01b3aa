"""The dashboard's one statement counts what the home screen shows."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_api.domain.dashboard import load_dashboard
from chorus_api.domain.errors import UserGoneError
from chorus_schema.models import RoomMessage

from ..support import Account, room_message


async def test_stats_count_orders_spending_and_messages(
    client: httpx.AsyncClient, account: Account, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for amount, cancel in ((100, False), (250, True), (4000, False)):
        order = await client.post(
            "/api/orders",
            json={"item": "x", "quantity": 1, "amount_cents": amount},
            headers=account.headers,
        )
        if cancel:
            cancelled = await client.patch(
                f"/api/orders/{order.json()['id']}",
                json={"status": "cancelled"},
                headers=account.headers,
            )
            assert cancelled.status_code == 200, cancelled.text
    async with sessions.begin() as session:
        await session.execute(
            insert(RoomMessage),
            [room_message(f"agree-{account.id}", 5, sender=str(account.id), text="hi")],
        )

    async with sessions() as session:
        board = await load_dashboard(session, user_id=account.id)

    assert (board.user.id, board.user.email) == (account.id, account.email)
    # Three orders; the cancelled one is not spent; one chat message stored.
    assert (board.stats.orders, board.stats.total_spent_cents, board.stats.messages_sent) == (
        3,
        4100,
        1,
    )
    # Newest first: the three creations, and the cancellation right after the second.
    assert [n["type"] for n in board.notifications] == [
        "order.created",
        "order.updated",
        "order.created",
        "order.created",
    ]
    assert [n["id"] for n in board.notifications] == sorted(
        (n["id"] for n in board.notifications), reverse=True
    )


async def test_unknown_user(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        with pytest.raises(UserGoneError):
            await load_dashboard(session, user_id=2**62)
