"""Every error answers in the standard JSON shape with the right status."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter

from chorus_common.app import create_service_app
from chorus_common.redis_client import create_redis
from chorus_common.settings import ServiceSettings
from chorus_devstack.servers import RunningRedis
from chorus_devstack.testing import base_url, serve_app


async def test_validation_errors_list_the_fields(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post("/items", json={"name": "", "quantity": "many"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    fields = {tuple(d["loc"]) for d in error["details"]}
    assert ("body", "name") in fields
    assert ("body", "quantity") in fields


async def test_malformed_json_is_422_not_500(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/items", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_http_errors_get_a_slug(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.get("/items/404")
    assert response.json() == {"error": {"code": "not_found", "message": "no such item"}}
    response = await probe_client.delete("/items/1")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_redis_outage_is_503_json(secret: str, private_redis: RunningRedis) -> None:
    redis = create_redis(private_redis.url, client_name="t", retries=0)
    router = APIRouter()

    @router.get("/count")
    async def count() -> dict[str, int]:
        return {"n": int(await redis.incr("n"))}

    app = create_service_app(
        ServiceSettings(env="test", jwt_secret=secret), title="t", version="0", routers=[router]
    )
    try:
        async with serve_app(app) as server, httpx.AsyncClient(base_url=base_url(server)) as client:
            assert (await client.get("/count")).status_code == 200
            await asyncio.to_thread(private_redis.stop)
            response = await client.get("/count")
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "unavailable"
            assert response.headers["retry-after"] == "2"
    finally:
        await redis.aclose()
