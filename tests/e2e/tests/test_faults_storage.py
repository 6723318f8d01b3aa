"""Faults in the storage tier: Postgres stopped, Redis restarted.

Postgres down → the api answers 503 JSON at once (never a 500, never a hang), realtime
chat goes on, and everything serves again when it is back — without restarting a service.
Redis restarted during a chat → every service recovers by itself and the clients resume.
"""

from __future__ import annotations

import os
from functools import partial

import httpx

from chorus_client import Backoff, RoomClient
from chorus_devstack.stack import Stack
from chorus_e2e.accounts import log_in, sign_up
from chorus_e2e.chat import (
    acknowledged,
    acknowledged_all,
    assert_exactly_once,
    has_messages,
    received_all,
)
from chorus_e2e.polling import eventually

SERVICES = ("api", "realtime-1", "realtime-2", "llm-gateway-1", "llm-gateway-2", "worker")


def pids(stack: Stack) -> dict[str, int | None]:
    """Process ids of the services (a restart would change them)."""
    return {name: stack.processes[name].pid for name in SERVICES}


async def all_ready(stack: Stack, ops: httpx.AsyncClient) -> None:
    """Wait until every service answers its readiness probe."""
    for name in SERVICES:
        await eventually(
            partial(ops.get, f"{stack.url(name)}/readyz"),
            until=lambda r: r.status_code == 200,
            timeout=40,
            what=f"{name} ready",
        )


async def test_postgres_down_means_503_json_then_recovery_without_restarts(
    stack: Stack, ingress: str, http: httpx.AsyncClient, ops: httpx.AsyncClient
) -> None:
    user = await sign_up(http, "patient")
    before = pids(stack)
    room = f"pg-{os.urandom(4).hex()}"
    # The hot read has its own pool (the Reader's): a connection in it when Postgres goes.
    own = await http.get(f"/api/users/{user.id}", headers=user.auth)
    assert own.status_code == 200
    async with RoomClient([ingress], room, user.token) as chat:
        await chat.wait_subscribed()
        stack.processes["postgres"].stop()
        try:
            for method, path, body in [
                ("GET", "/api/users/me", None),
                ("GET", f"/api/users/{user.id}", None),
                ("GET", "/api/dashboard", None),
                ("POST", "/api/orders", {"item": "tea", "quantity": 1, "amount_cents": 300}),
                ("GET", f"/api/rooms/{room}/messages", None),
            ]:
                response = await http.request(method, path, json=body, headers=user.auth)
                assert response.status_code == 503, (path, response.text)
                assert response.json()["error"]["code"] == "unavailable"
                assert int(response.headers["retry-after"]) > 0
            login = await http.post(
                "/api/auth/token", data={"username": user.email, "password": "x" * 12}
            )
            assert login.status_code == 503
            # Realtime does not need Postgres: the chat goes on.
            await chat.say("still here", ref="still")
            await chat.wait_for(lambda: "still here" in chat.messages())
        finally:
            stack.start_again("postgres")

    me = await eventually(
        lambda: http.get("/api/users/me", headers=user.auth),
        until=lambda r: r.status_code == 200,
        timeout=30,
        what="the api serving again",
    )
    assert me.json()["id"] == user.id
    again = await eventually(
        lambda: http.get(f"/api/users/{user.id}", headers=user.auth),
        until=lambda r: r.status_code == 200,
        timeout=30,
        what="the hot read serving again",
    )
    assert again.json() == own.json()
    assert await log_in(http, user.email)
    await all_ready(stack, ops)
    assert pids(stack) == before


async def test_redis_restart_during_a_chat_heals_without_restarts(
    stack: Stack, ingress: str, http: httpx.AsyncClient, ops: httpx.AsyncClient
) -> None:
    users = [await sign_up(http, name) for name in ("dora", "eli")]
    before = pids(stack)
    room = f"redis-{os.urandom(4).hex()}"
    clients = [
        RoomClient([ingress], room, u.token, backoff=Backoff(base=0.1, cap=1.0)) for u in users
    ]
    try:
        for client in clients:
            await client.start()
            await client.wait_subscribed()
        sent = [f"before-{i}" for i in range(5)]
        for text in sent:
            await clients[0].say(text, ref=text)
        for client in clients:
            await client.wait_for(has_messages(client, 5))

        stack.restart("redis")  # SIGTERM (the AOF is flushed), start, wait for PING

        await all_ready(stack, ops)
        after = [f"after-{i}" for i in range(5)]
        for i, text in enumerate(after):
            await clients[i % 2].say(text, ref=text)
        for client in clients:
            await client.wait_for(received_all(client, after), timeout=30)
        for i, client in enumerate(clients):
            mine = set(after[i::2])
            await client.wait_for(acknowledged_all(client, mine))
        acked = set().union(*(acknowledged(c) for c in clients))
        assert_exactly_once(clients, sent + after, acked)
        assert set(after) <= acked
    finally:
        for client in clients:
            await client.stop()

    # The rest of the system works again, too: a sign-up mails its welcome.
    newcomer = await sign_up(http, "after-redis")
    job = await eventually(
        lambda: http.get(f"/api/jobs/welcome:{newcomer.id}", headers=newcomer.auth),
        until=lambda r: r.json().get("status") == "complete",
        what="a welcome mail after the restart",
    )
    assert job.json()["result"]["status"] == "sent"
    assert pids(stack) == before
