"""openai: what ``domain/upstream.py`` takes from the SDK beyond its documented calls.

Non-streamed calls go through the client's low-level ``post`` with raw bytes
(``content=``) and ``cast_to`` the HTTP response, so the body is relayed unparsed; streams
reuse the headers the SDK computes (``default_headers`` and ``auth_headers``) and its
``base_url``. openai is pinned below its next major release in ``pyproject.toml``.
"""

from __future__ import annotations

import inspect

import httpx2
from openai import AsyncOpenAI, DefaultAioHttpClient


async def test_the_low_level_post_takes_raw_content_and_a_response_cast() -> None:
    parameters = inspect.signature(AsyncOpenAI.post).parameters
    for name in ("path", "cast_to", "content", "stream"):
        assert name in parameters, name


async def test_the_client_exposes_the_headers_and_url_it_sends_with() -> None:
    client = AsyncOpenAI(
        api_key="sk-contract",
        base_url="http://127.0.0.1:1/v1",
        default_headers={"X-Provider": "p"},
        max_retries=0,
    )
    try:
        assert client.auth_headers == {"Authorization": "Bearer sk-contract"}
        headers = dict(client.default_headers)
        assert headers["X-Provider"] == "p"
        assert "User-Agent" in headers
        assert isinstance(client.base_url, httpx2.URL)
        assert str(client.base_url).rstrip("/") == "http://127.0.0.1:1/v1"
    finally:
        await client.close()


async def test_the_aiohttp_transport_is_an_http_client_of_the_sdk() -> None:
    http = DefaultAioHttpClient(timeout=httpx2.Timeout(1.0))
    try:
        assert isinstance(http, httpx2.AsyncClient)
    finally:
        await http.aclose()
