"""Users as the public API makes them: register, log in, carry a token."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import httpx

__all__ = ["PASSWORD", "Account", "log_in", "sign_up", "unique_email"]

#: Meets the api's policy (length, two character classes, not the e-mail).
PASSWORD = "Correct-Horse-42"

_counter = itertools.count(1)


def unique_email(prefix: str) -> str:
    """An address no earlier run or test used."""
    return f"{prefix}.{os.getpid()}.{next(_counter)}.{os.urandom(3).hex()}@e2e.example"


@dataclass(frozen=True)
class Account:
    """A registered user and an access token of theirs."""

    id: int
    email: str
    full_name: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header for the api, realtime and the gateway."""
        return {"Authorization": f"Bearer {self.token}"}


async def log_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """``POST /api/auth/token``: an access token."""
    response = await http.post("/api/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def sign_up(http: httpx.AsyncClient, name: str) -> Account:
    """Register a new user through the ingress and log in."""
    email = unique_email(name)
    response = await http.post(
        "/api/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": name.title()},
    )
    assert response.status_code == 201, response.text
    user = response.json()
    token = await log_in(http, email)
    return Account(id=int(user["id"]), email=email, full_name=user["full_name"], token=token)
