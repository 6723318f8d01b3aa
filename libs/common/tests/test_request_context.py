"""X-Request-ID and X-Process-Time on every response; streaming and disconnects intact."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from .conftest_types import StreamControlLike


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/items/1", None, 200),
        ("GET", "/items/404", None, 404),
        ("GET", "/items/not-a-number", None, 422),
        ("POST", "/items", {"name": "", "quantity": 0}, 422),
        ("GET", "/nowhere", None, 404),
        ("GET", "/boom", None, 500),
        ("GET", "/healthz", None, 200),
        ("GET", "/metrics", None, 200),
    ],
)
async def test_headers_on_every_response(
    probe_client: httpx.AsyncClient, method: str, path: str, body: object, status: int
) -> None:
    started = time.perf_counter()
    response = await probe_client.request(method, path, json=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == status
    assert len(response.headers["x-request-id"]) == 32
    # The server's time is part of what the client waited, never more.
    assert 0 < float(response.headers["x-process-time"]) <= elapsed


async def test_incoming_request_id_is_kept(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.get("/items/1", headers={"X-Request-ID": "abc-123.def:9"})
    assert response.headers["x-request-id"] == "abc-123.def:9"


@pytest.mark.parametrize("hostile", ["a" * 200, "evil\u00e9id", "x y", ""])
async def test_unsafe_request_id_is_replaced(probe_client: httpx.AsyncClient, hostile: str) -> None:
    response = await probe_client.get("/items/1", headers={"X-Request-ID": hostile.encode("utf-8")})
    assert response.headers["x-request-id"] != hostile
    assert len(response.headers["x-request-id"]) == 32


async def test_unexpected_error_is_json_500_with_request_id(
    probe_client: httpx.AsyncClient,
) -> None:
    response = await probe_client.get("/boom", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "trace-me" in response.json()["error"]["message"]
    assert "kaboom" not in response.text


async def test_stream_is_not_buffered(
    probe_client: httpx.AsyncClient, control: StreamControlLike
) -> None:
    # The endpoint blocks after its first chunk until we release it: a buffering middleware
    # would hold that chunk back and this read would never complete.
    async with probe_client.stream("GET", "/stream") as response:
        chunks = response.aiter_raw()
        first = await asyncio.wait_for(anext(chunks), timeout=5)
        assert first.startswith(b"first")
        assert "x-request-id" in response.headers
        control.release.set()
        rest = b""
        while b"second" not in rest:
            rest += await asyncio.wait_for(anext(chunks), timeout=5)


async def test_client_disconnect_reaches_the_endpoint(
    probe_client: httpx.AsyncClient, control: StreamControlLike
) -> None:
    control.release.set()
    async with probe_client.stream("GET", "/stream") as response:
        async for chunk in response.aiter_raw():
            if b"tick" in chunk:
                break
    # Leaving the block closed the connection; the endpoint must notice.
    await asyncio.wait_for(control.disconnected.wait(), timeout=5)
