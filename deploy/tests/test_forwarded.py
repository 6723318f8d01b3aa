"""Whose X-Forwarded-For the chart's services believe, served as production serves them.

The per-address login and sign-up limits key on the client address uvicorn derives from
``X-Forwarded-For`` — but only from the peers in ``FORWARDED_ALLOW_IPS``. If every peer
were trusted (``*``), any client could write its own address in the header and get a fresh
budget with each request. This runs the api with the environment the chart renders, in
uvicorn built by the services' own production path (``DrainingServer`` and
``uvicorn_config``), and guesses from a client outside the trusted range with a new forged
address on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from deploycheck.chart import Rendered, render

from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_common.server import DrainingServer, uvicorn_config
from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningPostgres, RunningRedis
from chorus_schema.migrate import upgrade

#: A client that is not the ingress controller: another loopback address than the server's.
ATTACKER = "127.0.0.2"


def test_the_chart_never_trusts_every_peer(scenarios: dict[str, Rendered]) -> None:
    for name, rendered in scenarios.items():
        for service in ("api", "realtime", "llm-gateway", "worker"):
            trusted = rendered.get("ConfigMap", f"chorus-{service}")["data"]["FORWARDED_ALLOW_IPS"]
            assert trusted, (name, service)
            assert "*" not in trusted, (name, service, trusted)


@contextlib.asynccontextmanager
async def serve_chart_api(
    rendered: Rendered,
    postgres_server: RunningPostgres,
    redis_server: RunningRedis,
    *,
    redis_db: int,
) -> AsyncIterator[str]:
    """The api configured as ``rendered`` configures it, on the production server (its
    limits in Redis database ``redis_db``, so each test starts with fresh budgets)."""
    database = postgres_server.create_database(f"forwarded_{os.urandom(4).hex()}")
    upgrade(database)
    environment = dict(rendered.get("ConfigMap", "chorus-api")["data"])
    assert environment["ENV"] == "production"
    fields = set(ApiSettings.model_fields)
    values: dict[str, object] = {
        k.lower(): v for k, v in environment.items() if k.lower() in fields
    }
    values.update(
        host="127.0.0.1",
        port=free_port(),
        database_url=database,
        redis_url=redis_server.url.rsplit("/", 1)[0] + f"/{redis_db}",
        jwt_secret=os.urandom(24).hex(),
        log_level="WARNING",
        access_log=False,
    )
    settings = ApiSettings.model_validate(values)
    app = create_app(settings)
    server = DrainingServer(
        uvicorn_config(app, settings),
        lifecycle=app.state.lifecycle,
        drain_seconds=0,
        own_signals=False,
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the api did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def chart_api(
    default: Rendered, postgres_server: RunningPostgres, redis_server: RunningRedis
) -> AsyncIterator[str]:
    """The api configured as the default install configures it, on the production server."""
    async with serve_chart_api(default, postgres_server, redis_server, redis_db=5) as url:
        yield url


async def guess(client: httpx.AsyncClient, email: str, forged: str) -> httpx.Response:
    """A failed login claiming to come from ``forged``."""
    return await client.post(
        "/api/auth/token",
        data={"username": email, "password": "Wrong-Horse-42"},
        headers={"X-Forwarded-For": forged},
    )


async def test_a_forged_forwarded_for_buys_no_fresh_budget(chart_api: str) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=ATTACKER)
    async with httpx.AsyncClient(base_url=chart_api, transport=transport, timeout=30) as client:
        # Twenty failed logins (the default per-address limit), each claiming a new address.
        for i in range(20):
            response = await guess(client, f"spray-{i}@example.com", f"198.51.100.{i}")
            assert response.status_code == 401, response.text
        # All twenty were counted against the one real address: it is throttled now, and
        # an account with a recent failure is not tried from it, whatever the header says.
        refused = await guess(client, "spray-0@example.com", "203.0.113.77")
        assert refused.status_code == 429, refused.text
        assert "from this address" in refused.json()["error"]["message"]


async def test_the_ingress_controllers_forwarded_for_is_believed(
    postgres_server: RunningPostgres, redis_server: RunningRedis
) -> None:
    # The same requests through a trusted proxy (here the ingress controller's range is
    # the loopback address it connects from): each client address the controller reports
    # has a budget of its own, so twenty-one people are not throttled as one.
    rendered = render({"config": {"forwardedAllowIps": "127.0.0.1/32"}})
    trusted = rendered.get("ConfigMap", "chorus-api")["data"]["FORWARDED_ALLOW_IPS"]
    assert trusted == "127.0.0.1/32"
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.1")
    async with (
        serve_chart_api(rendered, postgres_server, redis_server, redis_db=6) as url,
        httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as client,
    ):
        for i in range(21):
            response = await guess(client, f"person-{i}@example.com", f"198.51.100.{i}")
            assert response.status_code == 401, response.text
        # Someone else behind the same controller is not held back by them either.
        again = await guess(client, "person-0@example.com", "203.0.113.77")
        assert again.status_code == 401, again.text
