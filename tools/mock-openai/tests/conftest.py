"""Fixtures: one real mock server for the session, reset before every test, and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from openai import AsyncOpenAI

from chorus_mock_openai import MockConfig
from chorus_mock_openai.testing import MockServer

API_KEY = "sk-test"


@pytest.fixture(scope="session")
def mock() -> Iterator[MockServer]:
    """The mock server (default config), started once for the whole test session."""
    with MockServer(MockConfig()) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_mock(mock: MockServer) -> None:
    """Every test starts from the startup config with no faults and an empty log."""
    mock.reset()


@pytest.fixture
async def http(mock: MockServer) -> AsyncIterator[httpx.AsyncClient]:
    """A raw HTTP client with a bearer token, based at the server root."""
    async with httpx.AsyncClient(
        base_url=mock.base_url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
async def client(mock: MockServer) -> AsyncIterator[AsyncOpenAI]:
    """The official OpenAI SDK pointed at the mock, with retries off."""
    openai_client = AsyncOpenAI(base_url=mock.api_base, api_key=API_KEY, max_retries=0)
    try:
        yield openai_client
    finally:
        await openai_client.close()
