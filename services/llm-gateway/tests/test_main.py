"""The app factory: provider configuration from a mounted file, and refusing bad config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI, NotFoundError

from chorus_devstack.servers import RunningRedis
from chorus_gateway.domain.api_keys import ApiKeyConfigError
from chorus_gateway.domain.providers import ProvidersConfigError
from chorus_gateway.main import create_app
from chorus_mock_openai import completion_text
from chorus_mock_openai.testing import MockServer

from .support import WORKER_KEY, running_gateway, settings_for

YAML = """\
providers:
  - name: yaml-mock
    base_url: {base}
    api_key_env: TEST_PROVIDER_KEY   # resolved from the environment (a mounted secret)
    models:
      chat-small: mock-gpt-mini      # public name -> the provider's model id
    weight: 2
    timeouts: {{connect: 2, ttft: 5, idle: 5, total: 30}}
aliases:
  assistant: chat-small
"""


async def test_providers_from_a_yaml_file(
    tmp_path: Path, gateway_redis: RunningRedis, upstream: MockServer
) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(YAML.format(base=upstream.api_base), encoding="utf-8")
    settings = settings_for(gateway_redis.url, str(path))
    async with running_gateway(settings) as url:
        sdk = AsyncOpenAI(base_url=f"{url}/v1", api_key=WORKER_KEY, max_retries=0)
        async with sdk:
            reply = await sdk.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": "hi"}]
            )
            models = sorted([m.id async for m in sdk.models.list()])
    assert reply.model == "mock-gpt-mini"
    assert reply.choices[0].message.content == completion_text(16)
    assert models == ["assistant", "chat-small"]


async def test_an_empty_provider_list_starts_serving_no_model(gateway_redis: RunningRedis) -> None:
    # A fresh install (the chart's default secrets.llmProviders: []) must come up.
    async with running_gateway(settings_for(gateway_redis.url, "[]")) as url:
        sdk = AsyncOpenAI(base_url=f"{url}/v1", api_key=WORKER_KEY, max_retries=0)
        async with sdk:
            assert [m.id async for m in sdk.models.list()] == []
            with pytest.raises(NotFoundError) as refused:
                await sdk.chat.completions.create(
                    model="assistant", messages=[{"role": "user", "content": "hi"}]
                )
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/readyz")).status_code == 200
    assert refused.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("providers", "fragment"),
    [
        ("", "LLM_PROVIDERS is empty"),
        ("/nonexistent/providers.yaml", "cannot be read"),
        ("[{", "not valid JSON"),
        ('[{"name": "x", "base_url": "http://h/v1", "models": []}]', "serves no models"),
        (
            '{"providers": [{"name": "x", "base_url": "http://h/v1", "models": ["m"]}],'
            ' "aliases": {"assistant": "gpt-4"}}',
            "no provider serves",
        ),
        (
            '[{"name": "x", "base_url": "http://h/v1", "models": ["m"], "api_key_env": "NOPE_X"}]',
            "NOPE_X is unset",
        ),
    ],
)
def test_bad_provider_configuration_stops_startup(providers: str, fragment: str) -> None:
    settings = settings_for("redis://127.0.0.1:1/0", providers)
    with pytest.raises(ProvidersConfigError, match=fragment):
        create_app(settings, environ={})


def test_bad_api_keys_stop_startup() -> None:
    providers: dict[str, Any] = {
        "providers": [{"name": "x", "base_url": "http://h/v1", "models": ["m"]}]
    }
    settings = settings_for("redis://127.0.0.1:1/0", providers, gateway_api_keys="no-colon")
    with pytest.raises(ApiKeyConfigError, match="not name:key"):
        create_app(settings, environ={})
