"""Postgres stopped → readiness and requests answer 503 JSON; started again → served again."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_devstack.servers import RunningPostgres
from chorus_devstack.testing import base_url, serve_app
from chorus_schema.migrate import upgrade

from ..support import new_account


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
