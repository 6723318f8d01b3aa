"""Errors on /v1 look like OpenAI's: statuses, types, codes, messages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI, AuthenticationError, NotFoundError, PermissionDeniedError

from chorus_common.tokens import TokenService
from chorus_devstack.servers import RunningRedis
from chorus_gateway.main import create_app

from ..support import JWT_SECRET, WORKER_KEY, running_gateway, settings_for

BODY = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        if isinstance(body, bytes):
            return await http.post(f"{url}/v1/chat/completions", content=body, headers=headers)
        return await http.post(f"{url}/v1/chat/completions", json=body, headers=headers)


async def test_no_credentials_is_openais_401(gateway_url: str) -> None:
    response = await post(gateway_url, BODY)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["message"].startswith("You didn't provide an API key.")
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)


async def test_a_wrong_key_is_invalid_api_key(gateway_url: str) -> None:
    sdk = AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="sk-wrong-key-123456", max_retries=0)
    async with sdk:
        with pytest.raises(AuthenticationError) as raised:
            await sdk.chat.completions.create(**BODY)
    assert raised.value.code == "invalid_api_key"
    assert "sk-wrong-key-123456" not in raised.value.message
    assert "sk-***3456" in raised.value.message


@pytest.mark.parametrize(
    "token",
    [
        TokenService(secret=JWT_SECRET, issuer="chorus").issue(7, ttl=timedelta(seconds=-60)),
        TokenService(secret="another-secret-that-is-long-enough-xx", issuer="chorus").issue(7),
        TokenService(secret=JWT_SECRET, issuer="someone-else").issue(7),
    ],
    ids=["expired", "forged", "wrong-issuer"],
)
async def test_bad_user_tokens_are_401(gateway_url: str, token: str) -> None:
    response = await post(gateway_url, BODY, {"authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_the_worker_key_is_accepted(gateway_url: str) -> None:
    response = await post(gateway_url, BODY, {"authorization": f"Bearer {WORKER_KEY}"})
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"


async def test_unknown_model_is_openais_404(client: AsyncOpenAI) -> None:
    with pytest.raises(NotFoundError) as raised:
        await client.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}]
        )
    assert raised.value.code == "model_not_found"
    assert raised.value.body == {
        "message": "The model `gpt-nope` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "could not parse the JSON body"),
        ({"messages": [{"role": "user", "content": "x"}]}, "must provide a model"),
        ({"model": "mock-gpt", "messages": []}, "empty array"),
        ({"model": "mock-gpt", "messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({**BODY, "stream": "yes"}, "'stream'"),
        ({**BODY, "max_tokens": 0}, "max_tokens"),
        ({**BODY, "stream_options": {"include_usage": True}}, "only allowed when 'stream'"),
    ],
)
async def test_invalid_bodies_are_400(
    gateway_url: str, auth: dict[str, str], body: Any, fragment: str
) -> None:
    response = await post(gateway_url, body, auth)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]


async def test_unknown_v1_urls_and_methods(gateway_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        missing = await http.get(f"{gateway_url}/v1/audio/speech")
        wrong_method = await http.get(f"{gateway_url}/v1/chat/completions")
        elsewhere = await http.get(f"{gateway_url}/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Invalid URL (GET /v1/audio/speech)"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    assert elsewhere.json()["error"]["code"] == "not_found"  # Chorus's shape off /v1


async def test_body_over_the_limit_is_413(
    gateway_redis: RunningRedis, providers: dict[str, Any], auth: dict[str, str]
) -> None:
    settings = settings_for(gateway_redis.url, providers, max_body_bytes=2048)
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 4000}]}
    async with running_gateway(settings) as url:
        response = await post(url, big, auth)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_keys_restricted_to_models_get_403_elsewhere(
    gateway_redis: RunningRedis, providers: dict[str, Any]
) -> None:
    keys = '[{"name": "narrow", "key": "k-narrow-0001", "models": ["assistant"]}]'
    settings = settings_for(gateway_redis.url, providers, gateway_api_keys=keys)
    async with running_gateway(settings) as url:
        sdk = AsyncOpenAI(base_url=f"{url}/v1", api_key="k-narrow-0001", max_retries=0)
        async with sdk:
            allowed = await sdk.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": "x"}]
            )
            with pytest.raises(PermissionDeniedError) as raised:
                await sdk.chat.completions.create(**BODY)
            listed = [m.id async for m in sdk.models.list()]
    assert allowed.choices[0].message.content
    assert raised.value.code == "model_not_allowed"
    assert listed == ["assistant"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**BODY, "messages": [{"role": "user", "content": "a\u0000b"}]}, "messages[0].content"),
        (
            {**BODY, "messages": [{"role": "user", "content": [{"type": "text", "text": "\x00"}]}]},
            "messages[0].content.0.text",
        ),
        (
            {**BODY, "messages": [{"role": "user", "content": "x", "name": "n\x00"}]},
            "messages[0].name",
        ),
        ({**BODY, "model": "mock-gpt\x00"}, "model"),
        ({**BODY, "user": "42\x00"}, "user"),
        ({**BODY, "user": "u" * 257}, "user"),
    ],
)
async def test_text_no_store_can_hold_is_a_400_naming_the_field(
    gateway_url: str, auth: dict[str, str], upstream: Any, body: Any, param: str
) -> None:
    response = await post(gateway_url, body, auth)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert upstream.requests() == []  # nothing reached a provider


async def test_users_may_call_only_the_models_listed_for_users(
    gateway_redis: RunningRedis, providers: dict[str, Any], auth: dict[str, str]
) -> None:
    """By default (GATEWAY_USER_MODELS=assistant) a user sees and calls the assistant only;
    to them the others do not exist. Service keys call every configured model."""
    settings = settings_for(gateway_redis.url, providers, gateway_user_models="assistant")
    async with running_gateway(settings) as url:
        token = auth["authorization"].removeprefix("Bearer ")
        user = AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
        key = AsyncOpenAI(base_url=f"{url}/v1", api_key=WORKER_KEY, max_retries=0)
        async with user, key:
            listed = [m.id async for m in user.models.list()]
            allowed = await user.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": "x"}]
            )
            with pytest.raises(NotFoundError) as raised:
                await user.chat.completions.create(**BODY)
            with pytest.raises(NotFoundError):
                await user.models.retrieve("mock-gpt-mini")
            served = await key.chat.completions.create(**BODY)
    assert listed == ["assistant"]
    assert allowed.choices[0].message.content
    assert raised.value.code == "model_not_found"
    assert raised.value.status_code == 404
    assert served.choices[0].message.content


def test_an_allow_list_naming_an_unknown_model_is_logged(
    gateway_redis: RunningRedis, providers: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(gateway_redis.url, providers, gateway_user_models="assistant,gpt-9")
    create_app(settings)
    assert "GATEWAY_USER_MODELS names models no provider serves: gpt-9" in caplog.text
