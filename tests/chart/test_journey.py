"""Every values file: the release from the chart is ready, and a user's journey works.

Sign up (the welcome mail reaches the SMTP relay the values name, its notification the SSE
stream), two users chat with their sockets on two realtime replicas, the assistant streams
an answer from the provider the values name, and the openai SDK streams a completion
through the gateway — all through the rendered ingress (or HTTPRoute).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable

import httpx
from openai import AsyncOpenAI

from chorus_chartrun.runner import ChartRun
from chorus_client import EventStreamClient, RoomClient
from chorus_e2e.accounts import sign_up
from chorus_e2e.endpoint import Endpoint
from chorus_e2e.polling import eventually
from chorus_mock_openai import completion_text

WS_CONNECTIONS = re.compile(r'^chorus_realtime_connections\{transport="ws"\} ([0-9.]+)$', re.M)


def test_every_workload_is_ready_and_helm_test_passes(release: ChartRun) -> None:
    status = release.status()
    assert status["phase"] == "Ready"
    assert all(w["ready"] for w in status["workloads"]), status["workloads"]
    kinds = {w["workload"].split("/")[0] for w in status["workloads"]}
    assert {"Deployment", "Job"} <= kinds
    assert release.info["tests"] == [{"pod": "chorus-test-readiness", "phase": "Succeeded"}]
    # Every container ran as the chart's non-root user.
    users = {c["uid"] for pod in status["pods"] for c in pod["containers"] if c["uid"] is not None}
    assert users == {10001}


async def test_sign_up_sends_the_welcome_mail_and_notifies_the_stream(
    http: httpx.AsyncClient, mail: httpx.AsyncClient, endpoint: Endpoint
) -> None:
    # The relay holds the conversation until the new user's stream is open, as a user who
    # signs up and lands in the app would have it.
    await mail.post("/hold", json={"stage": "rcpt", "count": 1, "seconds": 30})
    try:
        user = await sign_up(http, "newcomer")
        async with EventStreamClient(
            [endpoint.base_url], user.token, transport=endpoint.transport
        ) as stream:
            await stream.wait_for(lambda: bool(stream.of_type("subscribed")))
            await mail.post("/release")
            await stream.wait_for(lambda: bool(stream.of_type("welcome.sent")), timeout=30)
    finally:
        await mail.post("/release")
    [notification] = stream.of_type("welcome.sent")
    assert notification["channel"] == f"user:{user.id}"
    inbox = (await mail.get("/messages")).json()["items"]
    [welcome] = [m for m in inbox if user.email in m["rcpt_to"]]
    assert welcome["subject"] == "Welcome to Chorus"
    assert user.full_name in welcome["text"]
    if endpoint.connect_to is not None:  # the values name the public host: the mail links it
        assert f"Get started: {endpoint.base_url}" in welcome["text"]


async def test_two_users_chat_with_their_sockets_on_two_realtime_replicas(
    http: httpx.AsyncClient, endpoint: Endpoint, release: ChartRun
) -> None:
    room = f"chart-{os.urandom(4).hex()}"
    ada, bob = await sign_up(http, "ada"), await sign_up(http, "bob")
    options = endpoint.websocket_options()
    async with (
        RoomClient([endpoint.base_url], room, ada.token, connect_options=options) as mine,
        RoomClient([endpoint.base_url], room, bob.token, connect_options=options) as theirs,
    ):
        await mine.wait_subscribed()
        await theirs.wait_subscribed()
        # The ingress spread the two sockets over two replicas (no stickiness).
        replicas = release.pods("chorus-realtime-")
        assert len(replicas) >= 2

        def sockets_per_replica() -> list[float]:
            counts = []
            for pod in replicas:
                metrics = release.pod_get(pod, 8000, "/metrics").text
                counts.append(sum(float(v) for v in WS_CONNECTIONS.findall(metrics)))
            return counts

        await eventually(
            lambda: asyncio.to_thread(sockets_per_replica),
            until=lambda counts: sorted(counts, reverse=True)[:2] == [1.0, 1.0],
            what="one socket on each of two replicas",
        )
        await mine.say("hello from ada")
        await theirs.say("hello from bob")
        for client in (mine, theirs):
            await client.wait_for(_received(client, 2), timeout=15)
        assert mine.messages() == theirs.messages()
        assert set(mine.messages()) == {"hello from ada", "hello from bob"}


def _received(client: RoomClient, count: int) -> Callable[[], bool]:
    """Whether ``client`` has received ``count`` chat messages."""
    return lambda: len(client.messages()) >= count


async def test_the_assistant_streams_its_answer_into_the_room(
    http: httpx.AsyncClient, endpoint: Endpoint
) -> None:
    room = f"ask-{os.urandom(4).hex()}"
    asker = await sign_up(http, "asker")
    options = endpoint.websocket_options()
    async with RoomClient([endpoint.base_url], room, asker.token, connect_options=options) as me:
        await me.wait_subscribed()
        await me.say("@assistant what is Chorus?")
        await me.wait_for(lambda: any(e["type"] == "ai.done" for e in me.events), timeout=45)
    deltas = [e for e in me.events if e["type"] == "ai.delta"]
    [done] = [e for e in me.events if e["type"] == "ai.done"]
    assert deltas, "tokens stream before the final message"
    assert "".join(d["data"]["delta"] for d in deltas) == done["data"]["message"]
    assert done["data"]["message"] == completion_text(16)
    assert "error" not in done["data"]


async def test_the_openai_sdk_streams_a_completion_through_the_gateway(
    http: httpx.AsyncClient, endpoint: Endpoint
) -> None:
    user = await sign_up(http, "developer")
    async with endpoint.openai_http_client(timeout=30.0) as transport_client:
        client = AsyncOpenAI(
            base_url=f"{endpoint.base_url}/v1", api_key=user.token, http_client=transport_client
        )
        stream = await client.chat.completions.create(
            model="assistant",  # what users may call (llmGateway.userModels)
            messages=[{"role": "user", "content": "Say hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion_text(16)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 16
