"""answer_in_room against the real gateway (``python -m chorus_gateway``) in front of the mock.

The other assistant tests talk to the mock directly; here every error the room sees was
shaped by the gateway itself — its own refusals (a wrong key, its rate limit), what it
makes of a failing provider (502 after its retries, 504 after its first-token timeout, an
error event mid-stream) — and the tests assert the exact code the room gets for each.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from arq.jobs import deserialize_job
from pydantic import SecretStr

from chorus_common.events import room_channel
from chorus_common.queue import JOB_CODEC
from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_devstack.servers import RunningMockOpenAI, RunningRedis
from chorus_mock_openai import completion_text

from ..harness import TEST_SECRET, Harness, running_worker

WORKER_KEY = "worker-key-for-the-real-gateway"
LIMITED_KEY = "a-key-allowed-one-request-a-minute"


class Gateway:
    """One gateway process with two service keys, on a Redis database of its own."""

    def __init__(self, mock: RunningMockOpenAI, redis_url: str, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        providers = {
            "providers": [
                {
                    "name": "mock",
                    "base_url": f"{mock.url}/v1",
                    "api_key": "sk-mock",
                    "models": ["mock-gpt"],
                    "timeouts": {"connect": 2, "ttft": 1, "idle": 2, "total": 20},
                }
            ],
            "aliases": {"assistant": "mock-gpt"},
        }
        keys = [
            {"name": "worker", "key": WORKER_KEY},
            {"name": "limited", "key": LIMITED_KEY, "requests_per_minute": 1},
        ]
        spec = ProcessSpec(
            name="llm-gateway",
            argv=[sys.executable, "-m", "chorus_gateway"],
            env={
                "ENV": "test",
                "JWT_SECRET": TEST_SECRET,
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "REDIS_URL": redis_url,
                "LLM_PROVIDERS": json.dumps(providers),
                "GATEWAY_API_KEYS": json.dumps(keys),
                "GATEWAY_MAX_ATTEMPTS": "2",
                "LOG_FORMAT": "console",
            },
            ready_url=f"{self.url}/readyz",
            ready_timeout=30,
        )
        self.process = ManagedProcess(spec, log_dir)

    def usage_subjects(self) -> list[tuple[str, int | None]]:
        """(subject, user_id) of every usage job the gateway enqueued."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            jobs = [
                client.get(b"arq:job:" + job_id) for job_id in client.zrange("arq:queue", 0, -1)
            ]
        finally:
            client.close()

        codec = JOB_CODEC["job_deserializer"]
        found = [deserialize_job(r, deserializer=codec).args[0] for r in jobs if r is not None]
        return [(usage["subject"], usage["user_id"]) for usage in found]


@pytest.fixture(scope="module")
def gateway(
    mock_openai: RunningMockOpenAI,
    redis_server: RunningRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """The real gateway in front of the session's mock upstream."""
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    running = Gateway(mock_openai, url, tmp_path_factory.mktemp("gateway"))
    running.process.start()
    running.process.wait_ready()
    yield running
    running.process.stop()


def _settings(harness: Harness, gateway: Gateway, key: str = WORKER_KEY) -> Any:
    return harness.settings.model_copy(
        update={
            "llm_gateway_url": gateway.url,
            "llm_gateway_api_key": SecretStr(key),
            "assistant_model": "assistant",
        }
    )


async def _ask(harness: Harness, prompt: str, user_id: str = "7") -> dict[str, Any]:
    """Post a message as realtime would, have it answered; the room's ``ai.done`` data."""
    room = "lobby"
    message = await harness.bus.publish(
        room_channel(room), "message", {"message": prompt}, sender=user_id
    )
    job = await harness.enqueue(
        "answer_in_room", room, message.id, prompt, user_id, _job_id=f"assistant:{message.id}"
    )
    await harness.outcome(job, timeout=30)
    events = await harness.room_events(room)
    [done] = [
        e["data"] for e in events if e["type"] == "ai.done" and e["data"]["reply_to"] == message.id
    ]
    deltas = [
        e["data"]["delta"]
        for e in events
        if e["type"] == "ai.delta" and e["data"]["reply_to"] == message.id
    ]
    assert "".join(deltas) == done["message"]
    return dict(done)


async def test_an_answer_through_the_gateway_is_billed_to_the_member_who_asked(
    harness: Harness, gateway: Gateway
) -> None:
    async with running_worker(_settings(harness, gateway)):
        done = await _ask(harness, "@assistant hello [mock tokens=5]", user_id="4242")
    assert "error" not in done
    assert done["message"] == completion_text(5)
    assert done["usage"]["completion_tokens"] == 5
    # The gateway billed the worker's key, for the member who asked.
    assert ("key:worker", 4242) in gateway.usage_subjects()


#: What the room is told of a gateway failure: our own words, never the gateway's.
COULD_NOT = {"code": "gateway_error", "message": "The assistant could not answer this time."}


def failed_statuses(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The status of each failed gateway call, as the worker logged it ('' for none)."""
    return [
        str(r.args[1]).strip()
        for r in caplog.records
        if isinstance(r.args, tuple) and str(r.msg).startswith("assistant call failed")
    ]


async def test_the_gateways_own_refusals_reach_the_room_by_code(
    harness: Harness, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_worker(_settings(harness, gateway, key="not-a-key-it-knows")):
        wrong_key = await _ask(harness, "@assistant hi")
    async with running_worker(_settings(harness, gateway, key=LIMITED_KEY)):
        allowed = await _ask(harness, "@assistant once [mock tokens=2]")
        limited = await _ask(harness, "@assistant twice")

    assert wrong_key["error"] == COULD_NOT
    assert wrong_key["message"] == ""
    assert "error" not in allowed
    assert limited["error"]["code"] == "rate_limited"
    assert limited["message"] == ""
    # The operator sees what the gateway answered: its 401, then its 429.
    assert failed_statuses(caplog) == ["401", "429"]


async def test_a_failing_provider_reaches_the_room_as_the_gateway_reports_it(
    harness: Harness, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_worker(_settings(harness, gateway)):
        # Every attempt fails before the first token: the gateway's 502.
        refused = await _ask(harness, "@assistant hi [mock fault=error_before_start]")
        # No first token within the provider's TTFT, on every attempt: the gateway's 504.
        silent = await _ask(harness, "@assistant hi [mock fault=hang]")
        # The provider fails after three tokens: the gateway forwards its error event.
        broken = await _ask(
            harness, "@assistant hi [mock tokens=8 fault=error_mid_stream fault_after=3]"
        )
        # The provider's connection drops after two: the gateway's own upstream_error event.
        dropped = await _ask(harness, "@assistant hi [mock tokens=8 fault=drop fault_after=2]")

    assert refused["error"] == COULD_NOT
    assert silent["error"] == COULD_NOT
    assert (broken["error"], broken["message"]) == (COULD_NOT, completion_text(3))
    assert (dropped["error"], dropped["message"]) == (COULD_NOT, completion_text(2))
    # The gateway's 502 and 504, then its error events mid-stream (no status: the
    # response had begun with a 200).
    assert failed_statuses(caplog) == ["502", "504", "", ""]


async def test_a_gateway_that_is_down_is_unreachable_for_the_room(
    harness: Harness, gateway: Gateway
) -> None:
    settings = harness.settings.model_copy(
        update={
            "llm_gateway_url": f"http://127.0.0.1:{free_port()}",
            "assistant_model": "assistant",
        }
    )
    async with running_worker(settings):
        done = await _ask(harness, "@assistant anyone there?")
    assert done["error"]["code"] == "gateway_unreachable"
    assert done["message"] == ""
