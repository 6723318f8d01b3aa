"""Redis out of reach: the gateway fails closed (503), and never makes a client wait on it.

Each test runs a replica on a Redis of its own and takes it away for real — stopped, or
frozen with SIGSTOP so that commands hang instead of failing — as a failover or a stalled
primary would.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from prometheus_client import REGISTRY

from chorus_common.tokens import TokenService
from chorus_devstack.servers import RunningRedis
from chorus_mock_openai import completion_text
from chorus_mock_openai.testing import MockServer

from ..support import WORKER_KEY, UsageJobs, running_gateway, settings_for, settled


def chat(text: str, **extra: Any) -> dict[str, Any]:
    """A request body."""
    return {"model": "mock-gpt", "messages": [{"role": "user", "content": text}], **extra}


def dropped() -> float:
    """Usage records the process gave up on so far."""
    return REGISTRY.get_sample_value("chorus_gateway_usage_records_dropped_total") or 0.0


@contextlib.asynccontextmanager
async def stopped(redis: RunningRedis) -> AsyncIterator[None]:
    """Redis stopped for real (connections refused), started again on the same port after."""
    await asyncio.to_thread(redis.stop)
    try:
        yield
    finally:
        await asyncio.to_thread(redis.start)


@contextlib.contextmanager
def frozen(redis: RunningRedis) -> Iterator[None]:
    """Redis stopped with SIGSTOP: connections stay open, commands get no answer."""
    redis.process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        redis.process.signal(signal.SIGCONT)


@pytest.fixture
async def gateway(private_redis: RunningRedis, providers: dict[str, Any]) -> AsyncIterator[str]:
    """A replica whose Redis the test may take away."""
    async with running_gateway(settings_for(private_redis.url, providers)) as url:
        yield url


async def test_redis_down_is_a_503_for_every_caller_and_no_provider_is_called(
    gateway: str,
    private_redis: RunningRedis,
    upstream: MockServer,
    tokens: TokenService,
    user_id: int,
) -> None:
    user = {"authorization": f"Bearer {tokens.issue(user_id)}"}
    service = {"authorization": f"Bearer {WORKER_KEY}"}
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        assert (await http.get("/readyz")).status_code == 200
        async with stopped(private_redis):
            streamed = await http.post(
                "/v1/chat/completions",
                json=chat("[mock tag=down-user]", stream=True),
                headers=user,
            )
            whole = await http.post(
                "/v1/chat/completions", json=chat("[mock tag=down-key]"), headers=service
            )
            playground = await http.post(
                "/chat/stream", json={"content": "[mock tag=down-play]"}, headers=user
            )
            ready = await http.get("/readyz")
        again = await http.post("/v1/chat/completions", json=chat("back"), headers=service)

    for response in (streamed, whole):  # OpenAI's shape under /v1
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        assert response.json()["error"]["type"] == "server_error"
        assert response.headers["retry-after"] == "2"
    assert playground.status_code == 503
    assert playground.json()["error"]["code"] == "service_unavailable"  # Chorus's shape
    assert set(playground.json()["error"]) == {"code", "message"}
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["ok"] is False
    # Fail closed: no call went out unchecked and unmetered.
    for tag in ("down-user", "down-key", "down-play"):
        assert await asyncio.to_thread(upstream.requests, tag=tag) == []
    assert again.status_code == 200
    assert again.json()["choices"][0]["message"]["content"] == completion_text(16)


async def test_redis_down_after_the_subject_had_headroom_cancels_the_upstream_request(
    gateway: str, private_redis: RunningRedis, upstream: MockServer, tokens: TokenService
) -> None:
    # A subject with headroom by the replica's last admission answer has its first upstream
    # request sent while the admission runs; with Redis gone the admission fails, the
    # client gets the 503 and the provider's request is cancelled (and billed as a prompt).
    user = {"authorization": f"Bearer {tokens.issue(4242)}"}
    before = dropped()
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        first = await http.post(
            "/v1/chat/completions", json=chat("warm", stream=True), headers=user
        )
        assert first.status_code == 200
        async with stopped(private_redis):
            refused = await http.post(
                "/v1/chat/completions",
                json=chat("[mock ttft_ms=3000 tag=headroom]", stream=True),
                headers=user,
            )
            # The prompt's usage record cannot reach Redis either: dropped, counted.
            async with asyncio.timeout(20):
                while dropped() < before + 1:
                    await asyncio.sleep(0.05)

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "service_unavailable"
    [cancelled] = await settled(upstream, tag="headroom")
    assert cancelled["outcome"] == "client_disconnected"
    assert cancelled["tokens_sent"] == 0
    assert dropped() == before + 1


async def test_a_stream_ends_for_its_client_while_redis_is_frozen_and_is_billed_after(
    gateway: str, private_redis: RunningRedis, tokens: TokenService, user_id: int
) -> None:
    # Settling the limits and enqueuing the usage job both need Redis; neither may hold
    # back the client's last bytes. The client reads the whole stream while Redis hangs.
    user = {"authorization": f"Bearer {tokens.issue(user_id)}"}
    body = chat("[mock tokens=6 inter_token_ms=50 tag=frozen]", stream=True)
    async with (
        httpx.AsyncClient(base_url=gateway, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=user) as response,
    ):
        assert response.status_code == 200
        received = b""
        chunks = response.aiter_bytes()
        received += await anext(chunks)  # admitted: from here on Redis is not needed
        with frozen(private_redis):
            async for piece in chunks:
                received += piece
            events = [e[6:] for e in received.split(b"\n\n") if e.startswith(b"data: ")]
            assert events[-1] == b"[DONE]"  # the whole stream, with Redis still frozen
    text = "".join(orjson.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == completion_text(6)
    # Redis is back: the usage record waiting in the buffer reaches the queue.
    jobs = UsageJobs(redis.Redis.from_url(private_redis.url), subject=f"user:{user_id}")
    try:
        [job] = await jobs.wait(1, within=20)
    finally:
        jobs.client.close()
    assert (job["outcome"], job["completion_tokens"]) == ("completed", 6)
