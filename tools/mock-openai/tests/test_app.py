"""Routing, health endpoints and OpenAI-shaped errors for unknown URLs."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_unknown_route_is_openai_404(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/audio/speech", json={})

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/audio/speech)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


async def test_wrong_method_is_405(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/chat/completions")

    assert response.status_code == 405
    assert (
        response.json()["error"]["message"] == "Invalid method for URL (GET /v1/chat/completions)"
    )


async def test_keep_alive_connection_serves_many_requests(http: httpx.AsyncClient) -> None:
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}], "stream": True}

    for _ in range(20):
        response = await http.post("/v1/chat/completions", json=body)
        assert response.text.endswith("data: [DONE]\n\n")
