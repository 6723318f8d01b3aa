"""Users as the public API makes them: register, log in, carry a token."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import httpx

__all__ = ["PASSWORD", "Account", "client_address", "log_in", "sign_up", "unique_email"]

#: Meets the api's policy (length, two character classes, not the e-mail).
PASSWORD = "Correct-Horse-42"

_counter = itertools.count(1)


def unique_email(prefix: str) -> str:
    """An address no earlier run or test used."""
    return f"{prefix}.{os.getpid()}.{next(_counter)}.{os.urandom(3).hex()}@e2e.example"


def client_address() -> dict[str, str]:
    """Headers that make a request come from a client address of its own.

    Every request of the suite comes from this machine, and the api limits sign-ups and
    failed logins per client address. The devstack runs with ``ENV=dev``, whose services
    believe any ``X-Forwarded-For`` (a cluster believes only its ingress controller's), so
    a test can stand for many people.
    """
    raw = os.urandom(3)
    return {"X-Forwarded-For": f"10.{raw[0]}.{raw[1]}.{raw[2]}"}


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
        headers=client_address(),
    )
    assert response.status_code == 202, response.text
    token = await log_in(http, email)
    me = await http.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    user = me.json()
    return Account(id=int(user["id"]), email=email, full_name=user["full_name"], token=token)
