"""Helpers for the gateway tests (conftest is not importable by test modules)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis
from arq.jobs import deserialize_job

from chorus_common.queue import JOB_CODEC
from chorus_common.virtual_keys import (
    INVALIDATION_CHANNEL,
    Budget,
    KeyRecord,
    directory_key,
    new_secret,
    secret_digest,
    user_budget_key,
    user_budget_subject,
)
from chorus_devstack.testing import base_url, serve_app
from chorus_gateway.main import create_app
from chorus_gateway.settings import GatewaySettings
from chorus_mock_openai.testing import MockServer

JWT_SECRET = "a-test-secret-that-is-long-enough-for-hs256-keys"
WORKER_KEY = "test-worker-key-0123456789"
#: Seconds: short, so timeout tests are quick, long enough for a loaded 2-core machine.
TEST_TIMEOUTS = {"connect": 2.0, "ttft": 1.5, "idle": 1.5, "total": 20.0}


def provider(name: str, mock: MockServer, **extra: Any) -> dict[str, Any]:
    """A provider entry pointing at ``mock``."""
    entry: dict[str, Any] = {
        "name": name,
        "base_url": mock.api_base,
        "api_key": f"sk-{name}",
        "models": ["mock-gpt", "mock-gpt-mini"],
        "timeouts": TEST_TIMEOUTS,
    }
    entry.update(extra)
    return entry


def settings_for(redis_url: str, providers: Any, **overrides: Any) -> GatewaySettings:
    """Gateway settings as a test replica has them."""
    values: dict[str, Any] = {
        "env": "test",
        "jwt_secret": JWT_SECRET,
        "redis_url": redis_url,
        "access_log": False,
        "llm_providers": providers if isinstance(providers, str) else json.dumps(providers),
        "gateway_api_keys": f"worker:{WORKER_KEY}",
        "gateway_breaker_failures": 1000,
        "gateway_keepalive_seconds": 30.0,
        # Most tests call the mock's models with a user token; the allow-list has its own.
        "gateway_user_models": "*",
    }
    values.update(overrides)
    return GatewaySettings(**values)


@asynccontextmanager
async def running_gateway(settings: GatewaySettings) -> AsyncIterator[str]:
    """Serve one replica; yields its base URL."""
    app = create_app(settings, environ={**os.environ, "TEST_PROVIDER_KEY": "sk-from-env"})
    async with serve_app(app) as server:
        yield base_url(server)


async def settled(mock: MockServer, **filters: Any) -> list[dict[str, Any]]:
    """The mock's finished records matching ``filters``, asked from a thread.

    The mock's helpers block; called on this loop they would freeze the gateway under
    test, which shares the loop, exactly when it must react (e.g. to a disconnect).
    """
    return await asyncio.to_thread(mock.settled, 10.0, **filters)


class UsageJobs:
    """Reads the ``record_llm_usage`` jobs the gateway enqueued (arq's default queue)."""

    def __init__(self, client: redis.Redis, *, subject: str | None = None) -> None:
        self.client = client
        self.subject = subject

    def now(self) -> list[dict[str, Any]]:
        """Every usage job queued so far, as the ``usage`` dict the worker will receive."""
        found = []
        for job_id in self.client.zrange("arq:queue", 0, -1):
            raw = self.client.get(b"arq:job:" + job_id)
            if raw is None:
                continue
            job = deserialize_job(raw, deserializer=JOB_CODEC["job_deserializer"])
            if job.function != "record_llm_usage":
                continue
            usage = job.args[0]
            assert job_id.decode() == f"usage:{usage['request_id']}"
            if self.subject is None or usage["subject"] == self.subject:
                found.append(usage)
        return found

    async def wait(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        """Poll until ``count`` jobs are queued (fails after ``within`` seconds).

        Async: the gateway under test runs on this event loop and must keep running.
        """
        deadline = time.monotonic() + within
        while True:
            jobs = self.now()
            if len(jobs) >= count or time.monotonic() > deadline:
                assert len(jobs) >= count, jobs
                return jobs
            await asyncio.sleep(0.02)


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a blocking ``condition`` (run in a thread) until it holds, or fail."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def hang_up_after(
    url: str, body: dict[str, Any], headers: dict[str, str], *, contents: int = 5
) -> None:
    """Stream a completion from the gateway at ``url`` and close the connection mid-stream,
    once ``contents`` content chunks have arrived."""
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response,
    ):
        received = b""
        async for piece in response.aiter_bytes():
            received += piece
            if received.count(b'"content"') >= contents:
                break
        # leaving the block closes the connection mid-stream


def issue_virtual_key(client: redis.Redis, record: KeyRecord, *, ttl_ms: int | None = None) -> str:
    """Write a virtual key's record as the api does; returns the secret."""
    secret = new_secret()
    key = directory_key(secret_digest(secret))
    client.set(key, record.to_json(), px=ttl_ms)
    client.publish(INVALIDATION_CHANNEL, secret_digest(secret))
    return secret


def set_user_budget(client: redis.Redis, user_id: int, budget: Budget | None) -> None:
    """Set (None: remove) a user's own budget as the api does, and tell every replica."""
    if budget is None:
        client.delete(user_budget_key(user_id))
    else:
        client.set(user_budget_key(user_id), budget.to_json())
    client.publish(INVALIDATION_CHANNEL, user_budget_subject(user_id))


def revoke_virtual_key(client: redis.Redis, secret: str) -> None:
    """Remove a virtual key as the api does: delete its record, publish its digest."""
    digest = secret_digest(secret)
    client.delete(directory_key(digest))
    client.publish(INVALIDATION_CHANNEL, digest)
