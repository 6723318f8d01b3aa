"""Bodies over MAX_BODY_BYTES are refused with 413 JSON, declared or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from ..support import Account


async def test_declared_length_over_the_limit(client: httpx.AsyncClient, account: Account) -> None:
    body = b'{"item": "' + b"x" * 70_000 + b'", "quantity": 1, "amount_cents": 1}'
    response = await client.post(
        "/api/orders",
        content=body,
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.headers["x-request-id"]


async def test_streamed_body_over_the_limit(client: httpx.AsyncClient, account: Account) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"item": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'", "quantity": 1, "amount_cents": 1}'

    response = await client.post(
        "/api/orders",
        content=chunks(),
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_small_bodies_pass(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.post(
        "/api/orders",
        json={"item": "x" * 200, "quantity": 1, "amount_cents": 1},
        headers=account.headers,
    )
    assert response.status_code == 201
