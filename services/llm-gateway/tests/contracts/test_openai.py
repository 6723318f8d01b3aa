"""openai: what ``domain/upstream.py`` takes from the SDK beyond its documented calls.

Every call, streamed or not, is sent on the gateway's own HTTP/1.1 pool with the headers
the SDK computes (``default_headers`` and ``auth_headers``) to its ``base_url``. openai is
pinned below its next major release in ``pyproject.toml``.
"""

from __future__ import annotations

import httpx2
from openai import AsyncOpenAI


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
