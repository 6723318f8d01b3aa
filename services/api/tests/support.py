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


async def register(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> int:
    """Register and return the new user id."""
    response = await client.post(
        "/api/auth/register", json={"email": email, "password": password, "full_name": "Test User"}
    )
    assert response.status_code == 201, response.text
    user_id: int = response.json()["id"]
    return user_id


async def login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **headers: str
) -> httpx.Response:
    """POST the OAuth2 password form."""
    return await client.post(
        "/api/auth/token", data={"username": email, "password": password}, headers=headers
    )


async def new_account(client: httpx.AsyncClient, prefix: str = "user") -> Account:
    """Register a fresh user and log in."""
    email = unique_email(prefix)
    user_id = await register(client, email)
    response = await login(client, email)
    assert response.status_code == 200, response.text
    return Account(user_id, email, PASSWORD, response.json()["access_token"])


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
