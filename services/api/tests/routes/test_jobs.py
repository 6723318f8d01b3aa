"""Job status for its owner, through every state, with a real arq worker running the jobs.

The worker here is arq itself with stand-in job functions of the contract's names (the
real jobs live in the worker service) and the shared JSON codec; the api only reads what
arq records.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from arq.worker import Worker, func

from chorus_api.domain.jobs import enqueue
from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_common.queue import JOB_CODEC
from chorus_common.redis_client import create_redis
from chorus_devstack.servers import RunningRedis
from chorus_devstack.testing import base_url, serve_app

from ..support import Account, new_account


@pytest.fixture
async def jobs_api(
    settings: ApiSettings, private_redis: RunningRedis
) -> AsyncIterator[tuple[httpx.AsyncClient, ArqRedis]]:
    """The api on a Redis of this test's own, so the worker sees only this test's jobs."""
    app = create_app(settings.model_copy(update={"redis_url": private_redis.url}))
    redis = create_redis(private_redis.url, client_name="jobs-test")
    arq = ArqRedis(pool_or_conn=redis.connection_pool, **JOB_CODEC)
    async with (
        serve_app(app) as server,
        httpx.AsyncClient(base_url=base_url(server), trust_env=False, timeout=30) as client,
    ):
        yield client, arq
    await arq.aclose()
    await redis.aclose()


async def _status(client: httpx.AsyncClient, account: Account, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/jobs/{job_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _wait_for(
    client: httpx.AsyncClient, account: Account, job_id: str, status: str
) -> dict[str, Any]:
    for _ in range(500):
        body = await _status(client, account, job_id)
        if body["status"] == status:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"{job_id} never reached {status}: {body}")


async def test_job_status_through_its_life(
    jobs_api: tuple[httpx.AsyncClient, ArqRedis],
) -> None:
    client, arq = jobs_api
    owner = await new_account(client, "owner")
    stranger = await new_account(client, "stranger")
    welcome = f"welcome:{owner.id}"

    assert await _status(client, owner, welcome) == {
        "id": welcome,
        "function": "send_welcome_email",
        "status": "queued",
        "result": None,
    }
    for job_id in (welcome, "welcome:999999", "no-such-job"):
        response = await client.get(f"/api/jobs/{job_id}", headers=stranger.headers)
        assert response.status_code == 404, job_id
        assert response.json()["error"]["code"] == "not_found"
    assert (await client.get(f"/api/jobs/{welcome}")).status_code == 401

    release = asyncio.Event()

    async def send_welcome_email(ctx: dict[str, Any], user_id: int) -> dict[str, Any]:
        await release.wait()
        return {"sent_to": user_id}

    async def record_analytics(ctx: dict[str, Any], event: str, properties: dict[str, Any]) -> None:
        return None

    async def explode(ctx: dict[str, Any]) -> None:
        msg = "boom"
        raise ValueError(msg)

    boom = await enqueue(arq, function="explode", job_id=f"explode:{owner.id}", owner_id=owner.id)
    assert boom == f"explode:{owner.id}"
    worker = Worker(
        functions=[
            func(send_welcome_email, name="send_welcome_email"),
            func(record_analytics, name="record_analytics"),
            func(explode, name="explode", max_tries=1),
        ],
        redis_pool=arq,
        burst=True,
        handle_signals=False,
        poll_delay=0.01,
        **JOB_CODEC,  # the worker's encoding: JSON jobs and results
    )
    running = asyncio.create_task(worker.main())
    try:
        await _wait_for(client, owner, welcome, "in_progress")
        release.set()
        done = await _wait_for(client, owner, welcome, "complete")
        assert done == {
            "id": welcome,
            "function": "send_welcome_email",
            "status": "complete",
            "result": {"sent_to": owner.id},
        }
        failed = await _wait_for(client, owner, f"explode:{owner.id}", "failed")
        assert failed["function"] == "explode"
        assert failed["result"] is None
    finally:
        release.set()
        # Burst mode: main() returns once the queue is empty and its jobs have finished.
        # (Worker.close() would also close our shared client, through a deprecated call.)
        await asyncio.wait_for(running, timeout=30)


async def test_owned_job_whose_data_expired_is_not_found(
    jobs_api: tuple[httpx.AsyncClient, ArqRedis],
) -> None:
    client, arq = jobs_api
    owner = await new_account(client, "owner")
    await arq.set("chorus:job-owner:expired:1", str(owner.id))
    assert await _status(client, owner, "expired:1") == {
        "id": "expired:1",
        "function": None,
        "status": "not_found",
        "result": None,
    }
    bad = await client.get("/api/jobs/bad%20id", headers=owner.headers)
    assert bad.status_code == 422
