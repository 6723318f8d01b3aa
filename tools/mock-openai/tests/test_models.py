"""The model catalogue, through the OpenAI SDK and raw HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from chorus_mock_openai.testing import MockServer


async def test_sdk_lists_default_models(client: AsyncOpenAI) -> None:
    models = [model async for model in client.models.list()]

    assert [m.id for m in models] == ["mock-gpt", "mock-gpt-mini"]
    assert all(m.object == "model" and m.owned_by == "chorus-mock" for m in models)
    assert all(isinstance(m.created, int) for m in models)


async def test_list_wire_shape(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/models")

    assert response.status_code == 200
    assert response.json() == {
        "object": "list",
        "data": [
            {
                "id": "mock-gpt",
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "chorus-mock",
            },
            {
                "id": "mock-gpt-mini",
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "chorus-mock",
            },
        ],
    }


async def test_configured_models_are_listed(client: AsyncOpenAI, mock: MockServer) -> None:
    mock.configure(models=["alpha", "beta", "*"])

    models = [model.id async for model in client.models.list()]

    assert models == ["alpha", "beta"]


async def test_retrieve_model(client: AsyncOpenAI) -> None:
    model = await client.models.retrieve("mock-gpt-mini")

    assert model.id == "mock-gpt-mini"


async def test_retrieve_unknown_model_is_not_found(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("gpt-nope")

    assert caught.value.code == "model_not_found"


async def test_models_require_a_key(mock: MockServer) -> None:
    async with httpx.AsyncClient(base_url=mock.base_url) as anonymous:
        response = await anonymous.get("/v1/models")

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
