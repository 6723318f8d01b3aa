"""Hostile input through the ingress: each rejected as the services specify, and the other
users of the system do not notice.

Malformed and oversize WebSocket frames, a message flood, forged and expired tokens on
every protocol (REST, WebSocket, SSE, OpenAI API, playground), another user's SSE path,
a password-guessing run, and text no store can hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from chorus_client import SUBPROTOCOL, EventStreamClient, RoomClient
from chorus_common.redis_client import create_redis
from chorus_common.tokens import TokenService
from chorus_devstack.stack import Stack
from chorus_e2e.accounts import Account, client_address, log_in, sign_up
from chorus_e2e.chat import closed, history, metric_value
from chorus_e2e.polling import eventually


@pytest.fixture
async def victim(http: httpx.AsyncClient) -> Account:
    """An ordinary user who must not notice the attacks."""
    return await sign_up(http, "victim")


@pytest.fixture
async def attacker(http: httpx.AsyncClient) -> Account:
    """A user with a valid account who misbehaves."""
    return await sign_up(http, "attacker")


@pytest.fixture
def room() -> str:
    """A fresh room."""
    return f"hostile-{os.urandom(4).hex()}"


@pytest.fixture
async def bystander(ingress: str, room: str, victim: Account) -> AsyncIterator[RoomClient]:
    """The victim, sitting in the room the attacks happen in."""
    async with RoomClient([ingress], room, victim.token) as client:
        await client.wait_subscribed()
        yield client


async def raw_socket(ingress: str, room: str, token: str) -> ClientConnection:
    """A bare WebSocket (any frame can be sent), after its ``subscribed`` frame."""
    ws = await connect(
        f"{ingress.replace('http', 'ws', 1)}/ws/{room}",
        subprotocols=[Subprotocol(SUBPROTOCOL), Subprotocol(f"bearer.{token}")],
        max_size=2**22,
        open_timeout=10,
    )
    while orjson.loads(await ws.recv())["type"] != "subscribed":
        pass
    return ws


async def flood(ws: ClientConnection, frame: str, count: int) -> None:
    """Send ``frame`` ``count`` times as fast as possible (the server may hang up first)."""
    with contextlib.suppress(ConnectionClosed):
        for _ in range(count):
            await ws.send(frame)


async def reply(ws: ClientConnection) -> dict[str, object]:
    """The next frame that is not a room event (joins and messages pass by)."""
    async with asyncio.timeout(10):
        while True:
            frame: dict[str, object] = orjson.loads(await ws.recv())
            if not isinstance(frame.get("id"), str):
                return frame


async def frames_until_closed(ws: ClientConnection) -> list[dict[str, object]]:
    """Every frame received until the server closes the socket."""
    frames = []
    async with asyncio.timeout(15):
        try:
            async for raw in ws:
                frames.append(orjson.loads(raw))
        except ConnectionClosed:
            pass
    return frames


async def still_served(bystander: RoomClient, other: Account, ingress: str, room: str) -> None:
    """A message from another member still reaches the bystander."""
    text = f"still fine {os.urandom(2).hex()}"
    async with RoomClient([ingress], room, other.token) as speaker:
        await speaker.wait_subscribed()
        await speaker.say(text)
        await bystander.wait_for(lambda: text in bystander.messages())
    assert bystander.connects == 1
    assert bystander.closes == []


def error_code(frame: dict[str, object]) -> object:
    """The ``data.code`` of an error frame (None if it has none)."""
    data = frame.get("data")
    return data.get("code") if isinstance(data, dict) else None


async def test_malformed_frames_get_an_error_and_the_connection_stays(
    ingress: str, room: str, attacker: Account, bystander: RoomClient
) -> None:
    ws = await raw_socket(ingress, room, attacker.token)
    try:
        for junk in ["not json", "[1, 2]", '{"type": "launch-missiles"}', '{"type": "message"}']:
            await ws.send(junk)
            answer = await reply(ws)
            assert answer["type"] == "error", (junk, answer)
            assert dict(answer["data"])["code"]  # type: ignore[call-overload]
        await ws.send(orjson.dumps({"type": "ping"}).decode())
        assert await reply(ws) == {"type": "pong"}
    finally:
        await ws.close()
    assert bystander.messages() == []
    assert bystander.closes == []


async def test_an_oversize_frame_closes_1009_and_a_flood_closes_1008(
    ingress: str, room: str, attacker: Account, bystander: RoomClient, http: httpx.AsyncClient
) -> None:
    big = await raw_socket(ingress, room, attacker.token)
    await big.send(orjson.dumps({"type": "message", "message": "x" * 40_000}).decode())
    await frames_until_closed(big)
    assert big.close_code == 1009

    flooder = await raw_socket(ingress, room, attacker.token)
    # Far beyond the allowed burst (40) and rate (20/s).
    await flood(flooder, orjson.dumps({"type": "message", "message": "spam"}).decode(), 500)
    received = await frames_until_closed(flooder)
    assert flooder.close_code == 1008
    assert any(f.get("type") == "error" and error_code(f) == "rate_limited" for f in received), (
        received
    )
    # The bystander got only what the limiter let through (burst 40, refilling at 20/s,
    # not the 500 sent), and is still served.
    assert set(bystander.messages()) <= {"spam"}
    assert len(bystander.messages()) < 100
    await still_served(bystander, await sign_up(http, "friend"), ingress, room)


def forged_and_expired(stack: Stack, user: Account) -> dict[str, str]:
    """A token signed with the wrong secret, and a genuine one that has expired."""
    genuine = TokenService(secret=stack.options.jwt_secret, issuer="chorus")
    forger = TokenService(secret="not-the-secret-" + "x" * 40, issuer="chorus")
    return {
        "forged": forger.issue(user.id),
        "expired": genuine.issue(user.id, ttl=timedelta(minutes=-5)),
        "garbage": "not.a.jwt",
    }


async def test_forged_and_expired_tokens_are_refused_on_every_protocol(
    stack: Stack,
    ingress: str,
    http: httpx.AsyncClient,
    victim: Account,
    bystander: RoomClient,
    room: str,
) -> None:
    for kind, token in forged_and_expired(stack, victim).items():
        headers = {"Authorization": f"Bearer {token}"}
        # REST
        response = await http.get("/api/users/me", headers=headers)
        assert response.status_code == 401, kind
        assert response.json()["error"]["code"] == "invalid_token"
        # WebSocket: closed 1008 before anything is joined
        async with RoomClient([ingress], room, token, reconnect=False) as ws:
            await ws.wait_for(closed(ws))
        assert ws.closes[0].code == 1008, (kind, ws.closes)
        assert ws.of_type("subscribed") == []
        # SSE
        events = await http.get("/events", headers=headers)
        assert events.status_code == 401, kind
        # The OpenAI API, with the SDK
        async with AsyncOpenAI(base_url=f"{ingress}/v1", api_key=token, max_retries=0) as sdk:
            with pytest.raises(openai.AuthenticationError):
                await sdk.chat.completions.create(
                    model="mock-gpt", messages=[{"role": "user", "content": "hi"}]
                )
        # The playground
        play = await http.post("/chat/stream", json={"content": "hi"}, headers=headers)
        assert play.status_code == 401, kind
        assert play.json()["error"]["code"]
    # Nobody joined the room with those tokens (the one join is the bystander's own).
    assert [e["type"] for e in bystander.events] == ["join"]
    me = await http.get("/api/users/me", headers=victim.auth)
    assert me.status_code == 200


async def test_another_users_event_stream_is_forbidden(
    ingress: str, http: httpx.AsyncClient, victim: Account, attacker: Account
) -> None:
    async with EventStreamClient([ingress], victim.token) as own:
        await own.wait_for(lambda: bool(own.of_type("subscribed")))
        response = await http.get(f"/events/{victim.id}", headers=attacker.auth)
        assert response.status_code == 403
        # The owner's stream goes on: their order notification arrives.
        created = await http.post(
            "/api/orders",
            json={"item": "book", "quantity": 1, "amount_cents": 1200},
            headers=victim.auth,
        )
        assert created.status_code == 201
        await own.wait_for(lambda: bool(own.of_type("order.created")))
    assert own.connects == 1


async def test_password_guessing_is_slowed_without_locking_out_the_owner(
    http: httpx.AsyncClient, victim: Account, attacker: Account
) -> None:
    there = client_address()
    statuses = []
    for _ in range(7):
        response = await http.post(
            "/api/auth/token",
            data={"username": victim.email, "password": "Wrong-Guess-123"},
            headers=there,
        )
        statuses.append(response.status_code)
    # Three quick guesses, then growing delays (one may run out on a slow machine).
    assert statuses[:3] == [401] * 3
    assert statuses[-1] == 429
    assert statuses.count(401) <= 4, statuses
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == "too_many_attempts"
    # The owner, elsewhere, logs in as ever; so does the attacker's own account.
    assert await log_in(http, victim.email)
    assert await log_in(http, attacker.email)


async def say_acknowledged(ingress: str, room: str, token: str, text: str) -> None:
    """Say ``text`` in ``room`` and wait for the server's ``ack``."""
    async with RoomClient([ingress], room, token) as speaker:
        await speaker.wait_subscribed()
        await speaker.say(text, ref="r")
        await speaker.wait_for(lambda: bool(speaker.of_type("ack")))


async def persisted(
    http: httpx.AsyncClient, room: str, token: str, text: str
) -> list[dict[str, Any]]:
    """``room``'s stored history, once ``text`` is in it."""

    def holds(items: list[dict[str, Any]]) -> bool:
        return any(i["data"].get("message") == text for i in items)

    return await eventually(
        lambda: history(http, room, token), until=holds, what=f"{text!r} persisted"
    )


async def test_one_nul_character_stops_no_rooms_history(
    stack: Stack,
    ingress: str,
    http: httpx.AsyncClient,
    ops: httpx.AsyncClient,
    attacker: Account,
    victim: Account,
    room: str,
) -> None:
    """The reproduction: ``{"type":"message","message":"a\\u0000b"}``. Through the ingress it
    is refused; written straight into Redis (behind every check) it is set aside as a dead
    letter, and every room's history — its own room's included — keeps being persisted."""
    ws = await raw_socket(ingress, room, attacker.token)
    try:
        await ws.send(orjson.dumps({"type": "message", "message": "a\u0000b", "ref": "p"}))
        refused = await reply(ws)
    finally:
        await ws.close()
    assert refused["type"] == "error"
    assert refused["data"] == {
        "code": "invalid_text",
        "message": "'message' contains a NUL character (\\u0000)",
        "ref": "p",
    }

    redis = create_redis(stack.redis_url, client_name="e2e-poison")
    try:
        await redis.xadd(
            f"chorus:stream:room:{room}",
            {
                "e": orjson.dumps(
                    {
                        "channel": f"room:{room}",
                        "type": "message",
                        "data": {"message": "a\u0000b"},
                        "ts": "2026-11-29T10:00:00.000Z",
                        "from": str(attacker.id),
                    }
                )
            },
        )
    finally:
        await redis.aclose()
    other = f"{room}-other"
    said = {room: "after the poison", other: "elsewhere"}
    for where, text in said.items():
        await say_acknowledged(ingress, where, victim.token, text)
    for where, text in said.items():
        stored = await persisted(http, where, victim.token, text)
        assert all("\x00" not in str(i["data"]) for i in stored)
    dead = await eventually(
        lambda: ops.get(f"{stack.url('worker')}/metrics"),
        until=lambda m: (
            metric_value(
                m.text, "chorus_worker_dead_letters_total", '{function="persist_messages"}'
            )
            >= 1
        ),
        what="the poisoned entry dead-lettered",
    )
    assert dead.status_code == 200
