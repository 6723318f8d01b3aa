"""Orders: CRUD, pages, filters, ownership, the lifecycle, and the events they publish."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_api.domain.orders import OrderChanges, update_order
from chorus_common.events import EventBus, user_channel

from ..support import Account, new_account


async def _create(client: httpx.AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"item": "widget", "quantity": 1, "amount_cents": 500, **fields}
    response = await client.post("/api/orders", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _shop_moves(
    sessions: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
    account: Account,
    order_id: int,
    status: str,
) -> None:
    """What the shop's own code (payments, shipping) does: a service-side status change."""
    async with sessions() as session:
        await update_order(
            session,
            EventBus(arq, history_size=1000, history_ttl=86_400),
            user_id=account.id,
            order_id=order_id,
            changes=OrderChanges(status=status),
            by="service",
        )


async def _events(arq: ArqRedis, user_id: int, count: int = 50) -> list[dict[str, Any]]:
    raw = await EventBus(arq, history_size=1000, history_ttl=86_400).latest(
        user_channel(user_id), count=count
    )
    return [orjson.loads(event) for event in raw]


async def test_crud(client: httpx.AsyncClient, account: Account) -> None:
    created = await _create(client, account, item="keyboard", quantity=2, amount_cents=9998)
    assert created["status"] == "pending"
    assert set(created) == {"id", "item", "quantity", "amount_cents", "status", "created_at"}
    order_url = f"/api/orders/{created['id']}"

    read = await client.get(order_url, headers=account.headers)
    assert read.json() == created

    updated = await client.patch(
        order_url, json={"quantity": 3, "amount_cents": 14997}, headers=account.headers
    )
    assert updated.status_code == 200
    assert (updated.json()["quantity"], updated.json()["amount_cents"]) == (3, 14997)

    listed = await client.get("/api/orders", headers=account.headers)
    assert listed.json() == {"items": [updated.json()], "next_cursor": None}

    assert (await client.delete(order_url, headers=account.headers)).status_code == 204
    assert (await client.get(order_url, headers=account.headers)).status_code == 404
    assert (await client.delete(order_url, headers=account.headers)).status_code == 404


async def test_pages_cover_every_order_once_newest_first(
    client: httpx.AsyncClient, account: Account
) -> None:
    ids = [(await _create(client, account, item=f"o{i}"))["id"] for i in range(25)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/orders", params=params, headers=account.headers)).json()
        pages += 1
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(ids, reverse=True)


async def test_default_and_bounded_limits(client: httpx.AsyncClient, account: Account) -> None:
    for _ in range(21):
        await _create(client, account)
    default = (await client.get("/api/orders", headers=account.headers)).json()
    assert len(default["items"]) == 20
    assert default["next_cursor"] is not None
    for limit in (0, 101, -1):
        response = await client.get(f"/api/orders?limit={limit}", headers=account.headers)
        assert response.status_code == 422


async def test_bad_cursors_are_422(client: httpx.AsyncClient, account: Account) -> None:
    for cursor in ("garbage", "eyJsIjoicm9vbSIsImsiOiIxLTEifQ", "a" * 201):
        response = await client.get(
            "/api/orders", params={"cursor": cursor}, headers=account.headers
        )
        assert response.status_code == 422, cursor


async def test_status_filter(
    client: httpx.AsyncClient,
    account: Account,
    sessions: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
) -> None:
    paid = await _create(client, account, item="paid one")
    await _create(client, account, item="still pending")
    await _shop_moves(sessions, arq, account, paid["id"], "paid")
    only_paid = await client.get("/api/orders?status=paid", headers=account.headers)
    assert [o["item"] for o in only_paid.json()["items"]] == ["paid one"]
    pending = await client.get("/api/orders?status=pending", headers=account.headers)
    assert [o["item"] for o in pending.json()["items"]] == ["still pending"]
    bad = await client.get("/api/orders?status=lost", headers=account.headers)
    assert bad.status_code == 422


async def test_another_users_order_is_404(client: httpx.AsyncClient, account: Account) -> None:
    mine = await _create(client, account)
    intruder = await new_account(client, "intruder")
    url = f"/api/orders/{mine['id']}"
    for method, body in (("GET", None), ("PATCH", {"status": "cancelled"}), ("DELETE", None)):
        response = await client.request(method, url, json=body, headers=intruder.headers)
        assert response.status_code == 404, method
        assert response.json()["error"]["code"] == "not_found"
    assert (await client.get("/api/orders", headers=intruder.headers)).json()["items"] == []
    still = await client.get(url, headers=account.headers)
    assert still.json()["status"] == "pending"


async def test_the_buyer_may_only_cancel_a_pending_order(
    client: httpx.AsyncClient,
    account: Account,
    sessions: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
) -> None:
    order = await _create(client, account)
    url = f"/api/orders/{order['id']}"

    async def move(status: str) -> httpx.Response:
        return await client.patch(url, json={"status": status}, headers=account.headers)

    # Paying is the shop's: the lifecycle allows it, the buyer may not do it.
    refused = await move("paid")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "transition_forbidden"
    assert "cancel" in refused.json()["error"]["message"]
    assert (await move("shipped")).json()["error"]["code"] == "invalid_transition"  # not paid
    await _shop_moves(sessions, arq, account, order["id"], "paid")
    # A paid order: shipping and refunding (cancelling) are the shop's too.
    for status in ("shipped", "cancelled"):
        assert (await move(status)).json()["error"]["code"] == "transition_forbidden", status
    assert (await client.get(url, headers=account.headers)).json()["status"] == "paid"
    # A pending order the buyer cancels.
    other = await _create(client, account)
    cancelled = await client.patch(
        f"/api/orders/{other['id']}", json={"status": "cancelled"}, headers=account.headers
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"


async def test_lifecycle(
    client: httpx.AsyncClient,
    account: Account,
    sessions: async_sessionmaker[AsyncSession],
    arq: ArqRedis,
) -> None:
    order = await _create(client, account)
    url = f"/api/orders/{order['id']}"

    async def status() -> str:
        value: str = (await client.get(url, headers=account.headers)).json()["status"]
        return value

    await _shop_moves(sessions, arq, account, order["id"], "paid")
    assert await status() == "paid"
    edit = await client.patch(url, json={"amount_cents": 1}, headers=account.headers)
    assert edit.status_code == 409
    assert edit.json()["error"]["code"] == "order_not_editable"
    await _shop_moves(sessions, arq, account, order["id"], "shipped")
    assert await status() == "shipped"
    final = await client.patch(url, json={"status": "cancelled"}, headers=account.headers)
    assert final.status_code == 409
    assert final.json()["error"]["code"] == "invalid_transition"
    # Setting the current status again is nothing to do.
    same = await client.patch(url, json={"status": "shipped"}, headers=account.headers)
    assert same.status_code == 200


async def test_invalid_orders_are_422(client: httpx.AsyncClient, account: Account) -> None:
    for body in [
        {"item": "x", "quantity": 0, "amount_cents": 1},
        {"item": "x", "quantity": 1, "amount_cents": -1},
        {"item": "", "quantity": 1, "amount_cents": 1},
        {"item": "x" * 201, "quantity": 1, "amount_cents": 1},
        {"item": "x", "quantity": 1, "amount_cents": 10**13},
        {"item": "x", "quantity": 1, "amount_cents": 1, "status": "paid"},
        {"item": "\x00", "quantity": 1, "amount_cents": 1},
    ]:
        response = await client.post("/api/orders", json=body, headers=account.headers)
        assert response.status_code == 422, body
    huge_id = await client.get(f"/api/orders/{2**63}", headers=account.headers)
    assert huge_id.status_code == 422


async def test_changes_publish_events_on_the_users_channel(
    client: httpx.AsyncClient, account: Account, arq: ArqRedis
) -> None:
    order = await _create(client, account, item="evented")
    await client.patch(
        f"/api/orders/{order['id']}", json={"status": "cancelled"}, headers=account.headers
    )
    await client.delete(f"/api/orders/{order['id']}", headers=account.headers)

    events = await _events(arq, account.id)
    assert [e["type"] for e in events] == ["order.created", "order.updated", "order.deleted"]
    created, updated, deleted = events
    assert created["channel"] == f"user:{account.id}"
    assert created["from"] == "api"
    assert created["data"]["order"] == order
    assert updated["data"]["order"]["status"] == "cancelled"
    assert updated["data"]["previous_status"] == "pending"
    assert updated["data"]["changed"] == ["status"]
    assert deleted["data"]["order_id"] == order["id"]
    assert all(isinstance(e["data"]["notification_id"], int) for e in events)

    board = (await client.get("/api/dashboard", headers=account.headers)).json()
    assert [n["type"] for n in board["notifications"]][:3] == [
        "order.deleted",
        "order.updated",
        "order.created",
    ]
    assert [n["id"] for n in board["notifications"][:3]] == [
        e["data"]["notification_id"] for e in reversed(events)
    ]


async def test_no_event_for_a_change_that_changes_nothing(
    client: httpx.AsyncClient, account: Account, arq: ArqRedis
) -> None:
    order = await _create(client, account)
    same = await client.patch(
        f"/api/orders/{order['id']}", json={"item": order["item"]}, headers=account.headers
    )
    assert same.status_code == 200
    assert [e["type"] for e in await _events(arq, account.id)] == ["order.created"]
    assert json.loads(same.text) == order
