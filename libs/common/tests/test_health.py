"""Readiness follows dependencies without restarts; liveness never touches them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from chorus_common.app import create_service_app
from chorus_common.redis_client import create_redis, redis_check
from chorus_common.settings import ServiceSettings
from chorus_devstack.servers import RunningRedis
from chorus_devstack.testing import base_url, serve_app


def redis_app(secret: str, url: str) -> FastAPI:
    settings = ServiceSettings(env="test", jwt_secret=secret, ready_check_timeout=1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(url, client_name="test", retries=1)
        app.state.health.add_check("redis", redis_check(redis))
        yield
        await redis.aclose()

    return create_service_app(settings, title="t", version="0", lifespan=lifespan)


async def _ready_status(client: httpx.AsyncClient) -> int:
    return (await client.get("/readyz")).status_code


async def test_readiness_follows_redis_without_restart(
    secret: str, private_redis: RunningRedis
) -> None:
    async with (
        serve_app(redis_app(secret, private_redis.url)) as server,
        httpx.AsyncClient(base_url=base_url(server), trust_env=False) as client,
    ):
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["redis"]["ok"] is True

        await asyncio.to_thread(private_redis.stop)
        down = await client.get("/readyz")
        assert down.status_code == 503
        body = down.json()
        assert body["checks"]["redis"]["ok"] is False
        assert body["error"]["code"] == "not_ready"
        assert body["error"]["message"].startswith("redis:")
        # Liveness does not depend on Redis: Kubernetes must not restart us for it.
        assert (await client.get("/healthz")).status_code == 200

        await asyncio.to_thread(private_redis.start)
        # The pool reconnects on its own; the first check after the restart may still
        # see a dead pooled connection, so allow the retry budget of one more probe.
        statuses = [await _ready_status(client) for _ in range(3)]
        assert statuses[-1] == 200


async def test_a_hanging_check_times_out_and_is_named(secret: str) -> None:
    settings = ServiceSettings(env="test", jwt_secret=secret, ready_check_timeout=0.2)
    app = create_service_app(settings, title="t", version="0")
    never = asyncio.Event()
    app.state.health.add_check("slowpoke", never.wait)
    async with serve_app(app) as server, httpx.AsyncClient(base_url=base_url(server)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert "slowpoke: timed out" in response.json()["error"]["message"]


async def test_draining_makes_readiness_fail(secret: str) -> None:
    app = create_service_app(ServiceSettings(env="test", jwt_secret=secret), title="t", version="0")
    async with serve_app(app) as server, httpx.AsyncClient(base_url=base_url(server)) as client:
        assert (await client.get("/readyz")).status_code == 200
        await app.state.lifecycle.drain(0)
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["draining"]["ok"] is False
        assert (await client.get("/healthz")).status_code == 200
