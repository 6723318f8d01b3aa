"""Sign-ups under load: the deployment-wide limit, and a burst that leaves the pool to others.

These run an api of their own — a small pool, a low global limit — on a Redis database of
their own (the global sign-up counter is one key for the whole deployment).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_devstack.testing import base_url, serve_app

from ..support import PASSWORD, new_account, random_address, unique_email


@pytest.fixture(scope="module")
async def small_api(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An api with two pooled connections, one argon2 slot, at most 60 sign-ups a minute."""
    own = settings.model_copy(
        update={
            "redis_url": settings.redis_url.rsplit("/", 1)[0] + "/3",
            "db_pool_size": 2,
            "db_max_overflow": 0,
            "db_pool_timeout": 1.0,
            "password_hash_concurrency": 1,
            "signup_max_per_minute": 60,
        }
    )
    async with (
        serve_app(create_app(own)) as server,
        httpx.AsyncClient(base_url=base_url(server), trust_env=False, timeout=60) as client,
    ):
        yield client


def _sign_up(client: httpx.AsyncClient) -> asyncio.Task[httpx.Response]:
    body = {"email": unique_email("burst"), "password": PASSWORD, "full_name": "Burst"}
    return asyncio.create_task(
        client.post("/api/auth/register", json=body, headers=random_address())
    )


async def test_a_burst_of_sign_ups_leaves_connections_for_everyone_else(
    small_api: httpx.AsyncClient,
) -> None:
    reader = await new_account(small_api, "reader")
    # Forty sign-ups at once: with one argon2 slot they take seconds longer than
    # DB_POOL_TIMEOUT to hash, even on an idle machine. None may hold a connection meanwhile.
    burst = [_sign_up(small_api) for _ in range(40)]
    served = []
    while not all(task.done() for task in burst):
        response = await small_api.get("/api/dashboard", headers=reader.headers)
        served.append(response.status_code)
    assert len(served) >= 5, served  # the reads really ran while the burst was hashing
    assert set(served) == {200}, served
    assert [task.result().status_code for task in burst] == [202] * 40


async def test_sign_ups_are_limited_across_the_deployment(small_api: httpx.AsyncClient) -> None:
    # A botnet: every sign-up from another address. The global limit (60 a minute here)
    # still holds; the earlier test may have used part of this minute's budget.
    responses = [await _sign_up(small_api) for _ in range(61)]
    refused = [r for r in responses if r.status_code == 429]
    assert refused, [r.status_code for r in responses]
    assert {r.status_code for r in responses} == {202, 429}
    error = refused[0].json()["error"]
    assert error["code"] == "too_many_signups"
    assert "right now" in error["message"]
    assert 0 < int(refused[0].headers["retry-after"]) <= 60
    metrics = (await small_api.get("/metrics")).text
    assert 'chorus_api_signups_total{outcome="refused_global"}' in metrics
