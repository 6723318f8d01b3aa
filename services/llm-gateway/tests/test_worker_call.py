"""The call the worker's ``answer_in_room`` makes, exactly, against two replicas.

The worker uses the ``openai`` SDK with ``LLM_GATEWAY_API_KEY``, ``base_url =
LLM_GATEWAY_URL + "/v1"``, model ``ASSISTANT_MODEL`` (``assistant``) and a stream with
``include_usage`` — the devstack configures the gateway for exactly this
(``chorus_devstack.stack``), and so does this test.
"""

from __future__ import annotations

import json
from pathlib import Path

import redis
from openai import AsyncOpenAI

from chorus_devstack.servers import RunningRedis
from chorus_devstack.stack import GATEWAY_API_KEY, Ports, Stack, StackOptions
from chorus_mock_openai import completion_text
from chorus_mock_openai.testing import MockServer

from .support import UsageJobs, running_gateway, settings_for


async def test_the_worker_streams_an_answer_with_usage(
    tmp_path: Path, gateway_redis: RunningRedis, upstream: MockServer, redis_sync: redis.Redis
) -> None:
    stack = Stack(StackOptions(state_dir=tmp_path, ports=Ports.free()))
    env = stack.env_for("llm-gateway-1")
    providers = json.loads(env["LLM_PROVIDERS"])
    providers["providers"][0]["base_url"] = upstream.api_base  # the devstack's mock, here
    settings = settings_for(gateway_redis.url, providers, gateway_api_keys=env["GATEWAY_API_KEYS"])
    async with running_gateway(settings) as one, running_gateway(settings) as two:
        for base in (one, two):
            client = AsyncOpenAI(base_url=f"{base}/v1", api_key=GATEWAY_API_KEY, max_retries=0)
            async with client:
                stream = await client.chat.completions.create(
                    model="assistant",
                    messages=[{"role": "user", "content": "hello"}],
                    stream=True,
                    stream_options={"include_usage": True},
                    user="42",  # the room member who asked, as the worker sends it
                )
                deltas, usage = [], None
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        deltas.append(chunk.choices[0].delta.content)
                    if chunk.usage is not None:
                        usage = chunk.usage
            assert "".join(deltas) == completion_text(16)
            assert usage is not None
            assert usage.completion_tokens == 16
    jobs = await UsageJobs(redis_sync, subject="key:worker").wait(2)
    assert {j["model"] for j in jobs} == {"mock-gpt"}
    # The key's limits apply, but the tokens are counted for the member who asked.
    assert {(j["subject"], j["user_id"]) for j in jobs} == {("key:worker", 42)}
