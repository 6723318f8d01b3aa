"""Both dashboard variants compute the same thing (the bench compares only their speed)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_api.domain.dashboard import load_dashboard, load_dashboard_concurrently
from chorus_api.domain.errors import UserGoneError
from chorus_schema.models import RoomMessage

from ..support import Account, room_message


async def test_variants_agree(
    client: httpx.AsyncClient, account: Account, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for amount, status in ((100, None), (250, "cancelled"), (4000, "paid")):
        order = await client.post(
            "/api/orders",
            json={"item": "x", "quantity": 1, "amount_cents": amount},
            headers=account.headers,
        )
        if status:
            await client.patch(
                f"/api/orders/{order.json()['id']}",
                json={"status": status},
                headers=account.headers,
            )
    async with sessions.begin() as session:
        await session.execute(
            insert(RoomMessage),
            [room_message(f"agree-{account.id}", 5, sender=str(account.id), text="hi")],
        )

    async with sessions() as session:
        single = await load_dashboard(session, user_id=account.id)
    concurrent = await load_dashboard_concurrently(sessions, user_id=account.id)

    assert single.user == concurrent.user
    assert single.stats == concurrent.stats
    assert (single.stats.orders, single.stats.total_spent_cents, single.stats.messages_sent) == (
        3,
        4100,
        1,
    )
    # JSONB renders timestamps as text; the concurrent variant has datetimes.
    assert [(n["id"], n["type"], n["data"]) for n in single.notifications] == [
        (n["id"], n["type"], n["data"]) for n in concurrent.notifications
    ]


async def test_unknown_user(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        with pytest.raises(UserGoneError):
            await load_dashboard(session, user_id=2**62)
    with pytest.raises(UserGoneError):
        await load_dashboard_concurrently(sessions, user_id=2**62)
