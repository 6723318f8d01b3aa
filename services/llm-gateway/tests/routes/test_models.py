"""``GET /v1/models``: every model and alias, in OpenAI's shape, for authenticated callers."""

from __future__ import annotations

import httpx
import pytest
from openai import AsyncOpenAI, NotFoundError


async def test_the_sdk_lists_models_and_aliases(client: AsyncOpenAI) -> None:
    models = [m async for m in client.models.list()]
    assert [m.id for m in models] == ["assistant", "mock-gpt", "mock-gpt-mini"]
    owners = {m.id: m.owned_by for m in models}
    assert owners == {"assistant": "chorus", "mock-gpt": "primary", "mock-gpt-mini": "primary"}


async def test_one_model_or_404(client: AsyncOpenAI) -> None:
    assert (await client.models.retrieve("assistant")).id == "assistant"
    with pytest.raises(NotFoundError):
        await client.models.retrieve("gpt-nope")


async def test_listing_needs_credentials(gateway_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway_url}/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
