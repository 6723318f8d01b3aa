"""Revoked user tokens: every gateway route refuses them (401), as the api and realtime do."""

from __future__ import annotations

from typing import Any

import httpx
import redis

from chorus_common.tokens import TokenService, token_version_key
from chorus_devstack.servers import RunningRedis

from ..support import WORKER_KEY, running_gateway, settings_for


async def test_a_revoked_token_is_refused_everywhere(
    gateway_redis: RunningRedis,
    providers: dict[str, Any],
    tokens: TokenService,
    user_id: int,
    redis_sync: redis.Redis,
) -> None:
    # A replica that reads the account's token version on every request (no cache).
    settings = settings_for(gateway_redis.url, providers, token_version_cache_seconds=0)
    old = {"authorization": f"Bearer {tokens.issue(user_id)}"}
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/v1/models", headers=old)).status_code == 200
        assert (await http.post("/v1/chat/completions", json=body, headers=old)).status_code == 200
        # The api changed the password: tokens below version 2 end.
        redis_sync.set(token_version_key(str(user_id)), 2, ex=600)
        for method, path, payload in [
            ("GET", "/v1/models", None),
            ("POST", "/v1/chat/completions", body),
            ("POST", "/chat/stream", {"content": "hi"}),
        ]:
            refused = await http.request(method, path, json=payload, headers=old)
            assert refused.status_code == 401, (path, refused.text)
            assert "revoked" in refused.text, path
        new = {"authorization": f"Bearer {tokens.issue(user_id, version=2)}"}
        assert (await http.post("/v1/chat/completions", json=body, headers=new)).status_code == 200
        # Service keys have no account: nothing of theirs is ever revoked this way.
        worker = {"authorization": f"Bearer {WORKER_KEY}"}
        assert (await http.get("/v1/models", headers=worker)).status_code == 200
