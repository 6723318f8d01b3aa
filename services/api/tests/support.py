"""Helpers the api tests share (conftest itself is not importable by test modules)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from chorus_api.settings import ApiSettings

TEST_SECRET = "api-test-secret-long-enough-for-hs256-keys!"
PASSWORD = "Correct-Horse-42"


def make_settings(**overrides: Any) -> ApiSettings:
    """Settings as a test process has them; nothing read from the environment matters."""
    values: dict[str, Any] = {
        "env": "test",
        "jwt_secret": TEST_SECRET,
        "log_level": "WARNING",
        "access_log": False,
        # Revocations reach the api within a second, and Redis is repaired as often.
        "token_version_cache_seconds": 1.0,
        "token_resync_seconds": 1.0,
        "key_resync_seconds": 1.0,
        # The suite registers from many addresses at once; the global limit has its test.
        "signup_max_per_minute": 100_000,
        # Room limits small enough for a test to reach; Redis's copy repaired every second.
        "rooms_max_owned": 4,
        "room_max_members": 4,
        "room_max_pending_invitations": 4,
        "room_invitations_per_hour": 6,
        "room_invitation_mails_per_address_per_day": 2,
        "dm_opens_per_hour": 4,
        "room_acl_resync_seconds": 1.0,
    }
    values.update(overrides)
    return ApiSettings(**values)


def unique_email(prefix: str = "user") -> str:
    """An address no other test uses."""
    return f"{prefix}-{os.urandom(5).hex()}@example.com"


@dataclass(frozen=True)
class Account:
    """A registered user with a valid token."""

    id: int
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}


def address(host: str) -> dict[str, str]:
    """Headers that make a request come from ``host`` (the tests' peer is a trusted proxy)."""
    return {"X-Forwarded-For": host}


def random_address() -> dict[str, str]:
    """:func:`address` of a private-range host no other test uses (limits are per address)."""
    raw = os.urandom(3)
    return address(f"10.{raw[0]}.{raw[1]}.{raw[2]}")


async def register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **headers: str
) -> httpx.Response:
    """Register (from a fresh address unless ``headers`` say otherwise); 202 expected."""
    response = await client.post(
        "/api/auth/register",
        json={"email": email, "password": password, "full_name": "Test User"},
        headers=headers or random_address(),
    )
    assert response.status_code == 202, response.text
    return response


async def login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **headers: str
) -> httpx.Response:
    """POST the OAuth2 password form (from a fresh address unless ``headers`` say otherwise).

    The client does not keep the device cookie the api sets: a test that means to be a
    known device sends it itself (``Cookie`` header), so no test is one by accident.
    """
    response = await client.post(
        "/api/auth/token",
        data={"username": email, "password": password},
        headers=headers or random_address(),
    )
    client.cookies.clear()
    return response


async def new_account(client: httpx.AsyncClient, prefix: str = "user") -> Account:
    """Register a fresh user and log in."""
    email = unique_email(prefix)
    await register(client, email)
    response = await login(client, email)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    me = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    return Account(me.json()["id"], email, PASSWORD, token)


def room_message(
    room: str, ms: int, seq: int = 0, *, sender: str, text: str, type_: str = "message"
) -> dict[str, Any]:
    """Column values of a ``room_messages`` row as the worker's persist job writes it."""
    from datetime import UTC, datetime  # noqa: PLC0415

    data: dict[str, Any] = (
        {"message": text} if type_ == "message" else {"message": text, "reply_to": "1-0"}
    )
    return {
        "room": room,
        "stream_ms": ms,
        "stream_seq": seq,
        "type": type_,
        "sender": sender,
        "user_id": int(sender) if sender.isdigit() else None,
        "data": data,
        "created_at": datetime.fromtimestamp(ms / 1000, UTC),
    }


def room_name(prefix: str = "room") -> str:
    """A room name no other test uses."""
    return f"{prefix}-{os.urandom(4).hex()}"


async def create_room(
    client: httpx.AsyncClient, owner: Account, *, visibility: str = "private", name: str = ""
) -> str:
    """Register a room owned by ``owner``; its name."""
    name = name or room_name()
    response = await client.post(
        "/api/rooms", json={"name": name, "visibility": visibility}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return name


async def add_member(
    client: httpx.AsyncClient, room: str, owner: Account, member: Account, role: str = "member"
) -> None:
    """Invite ``member`` by account and accept as them."""
    invited = await client.post(
        f"/api/rooms/{room}/invitations",
        json={"user_id": member.id, "role": role},
        headers=owner.headers,
    )
    assert invited.status_code == 201, invited.text
    accepted = await client.post(
        f"/api/invitations/{invited.json()['id']}/accept", headers=member.headers
    )
    assert accepted.status_code == 200, accepted.text


def metric_value(text: str, name: str, **labels: str) -> float:
    """A sample of the Prometheus exposition ``text`` (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"{name}{{{wanted}}}" if wanted else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
