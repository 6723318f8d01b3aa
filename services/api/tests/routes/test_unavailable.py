"""Postgres or Redis stopped → readiness and requests answer 503 JSON; back → served again.

A change Postgres committed is never turned into an error because Redis is away: the order
stays, the dashboard shows it, only its live event is lost.
"""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from redis.asyncio import Redis

from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_common.events import stream_key, user_channel
from chorus_devstack.servers import RunningPostgres, RunningRedis
from chorus_devstack.testing import base_url, serve_app
from chorus_schema.migrate import upgrade

from ..support import PASSWORD, Account, login, new_account, random_address, register, unique_email


@pytest.mark.slow
async def test_postgres_outage_is_503_then_recovers(
    settings: ApiSettings, private_postgres: RunningPostgres
) -> None:
    url = private_postgres.create_database(f"outage_{os.urandom(3).hex()}")
    upgrade(url)
    app = create_app(settings.model_copy(update={"database_url": url, "db_connect_timeout": 2.0}))
    async with (
        serve_app(app) as server,
        httpx.AsyncClient(base_url=base_url(server), trust_env=False, timeout=30) as client,
    ):
        account = await new_account(client, "outage")
        assert (await client.get("/readyz")).status_code == 200

        private_postgres.stop()
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["postgres"]["ok"] is False
        assert ready.json()["checks"]["redis"]["ok"] is True
        requests = [
            client.get("/api/users/me", headers=account.headers),
            client.get(f"/api/users/{account.id}", headers=account.headers),  # the Reader
            client.get("/api/dashboard", headers=account.headers),
            client.post(
                "/api/orders",
                json={"item": "x", "quantity": 1, "amount_cents": 1},
                headers=account.headers,
            ),
            client.post("/api/auth/token", data={"username": account.email, "password": "x"}),
        ]
        for response in await asyncio.gather(*requests):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "unavailable"
            assert response.headers["retry-after"] == "2"
            assert response.headers["x-request-id"]

        private_postgres.start()
        # No restart of the api: the pool replaces its dead connections on its own.
        me = await client.get("/api/users/me", headers=account.headers)
        assert me.status_code == 200
        assert me.json()["id"] == account.id
        with_orders = await client.get(f"/api/users/{account.id}", headers=account.headers)
        assert with_orders.status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        created = await client.post(
            "/api/orders",
            json={"item": "after", "quantity": 1, "amount_cents": 1},
            headers=account.headers,
        )
        assert created.status_code == 201


async def test_redis_outage_is_503_yet_an_order_placed_meanwhile_is_kept(
    settings: ApiSettings, private_redis: RunningRedis
) -> None:
    # A token whose account version the process read recently is accepted without Redis
    # for TOKEN_VERSION_CACHE_SECONDS: that is the window in which a change can commit
    # while its event cannot be published.
    app = create_app(
        settings.model_copy(
            update={"redis_url": private_redis.url, "token_version_cache_seconds": 60.0}
        )
    )
    async with (
        serve_app(app) as server,
        httpx.AsyncClient(base_url=base_url(server), trust_env=False, timeout=30) as client,
    ):
        buyer = await new_account(client, "buyer")  # its token version is now remembered
        email = unique_email("stranger")
        await register(client, email)
        stranger = (await login(client, email)).json()["access_token"]  # never checked yet
        assert (await client.get("/readyz")).status_code == 200

        await asyncio.to_thread(private_redis.stop)
        try:
            ready = await client.get("/readyz")
            refused = {
                "login": await client.post(
                    "/api/auth/token",
                    data={"username": buyer.email, "password": PASSWORD},
                    headers=random_address(),
                ),
                "register": await client.post(
                    "/api/auth/register",
                    json={"email": unique_email(), "password": PASSWORD, "full_name": "N"},
                    headers=random_address(),
                ),
                "a token not checked lately": await client.get(
                    "/api/users/me", headers={"Authorization": f"Bearer {stranger}"}
                ),
            }
            placed = await client.post(
                "/api/orders",
                json={"item": "offline", "quantity": 2, "amount_cents": 300},
                headers=buyer.headers,
            )
            listed = await client.get("/api/orders", headers=buyer.headers)
            dashboard = await client.get("/api/dashboard", headers=buyer.headers)
        finally:
            await asyncio.to_thread(private_redis.start)
        after = await client.get("/api/users/me", headers={"Authorization": f"Bearer {stranger}"})

    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["ok"] is False
    assert ready.json()["checks"]["postgres"]["ok"] is True
    for what, response in refused.items():
        assert response.status_code == 503, (what, response.text)
        assert response.json()["error"]["code"] == "unavailable", what
        assert response.headers["retry-after"] == "2", what
    # The order committed: the client was told so, and every read shows it.
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert [o["id"] for o in listed.json()["items"]] == [order["id"]]
    body = dashboard.json()
    assert body["stats"]["orders"] == 1
    assert body["stats"]["total_spent_cents"] == 300
    [note] = body["notifications"]
    assert note["type"] == "order.created"
    # Only the live event is lost: nothing about the order reached the user's stream.
    await _assert_no_order_event(private_redis, buyer, order["id"])
    assert after.status_code == 200


async def _assert_no_order_event(redis_server: RunningRedis, account: Account, order: int) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        entries = await redis.xrange(stream_key(user_channel(account.id)))
    finally:
        await redis.aclose()
    assert all(str(order).encode() not in fields[b"e"] for _, fields in entries)
