"""Password guessing through the api: reserved first, slowed per pair, never an owner locked out."""

from __future__ import annotations

import asyncio

import httpx

from ..support import (
    PASSWORD,
    Account,
    login,
    new_account,
    random_address,
    register,
    unique_email,
)

WRONG = "Wrong-Horse-42"


def _device(response: httpx.Response) -> dict[str, str]:
    """The Cookie header that makes a later request come from the same known device."""
    return {"Cookie": f"chorus_device={response.cookies['chorus_device']}"}


def _scope(response: httpx.Response) -> str:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "too_many_attempts"
    assert int(response.headers["retry-after"]) > 0
    return str(response.json()["error"]["message"])


async def test_parallel_guesses_are_reserved_before_any_is_checked(
    client: httpx.AsyncClient, account: Account
) -> None:
    here = random_address()
    responses = await asyncio.gather(
        *(login(client, account.email, f"{WRONG}-{i}", **here) for i in range(12))
    )
    statuses = [r.status_code for r in responses]
    # LOGIN_FREE_FAILURES = 3 guesses get checked; the others were refused before argon2
    # ever ran, although all twelve arrived together. (One more may pass on a machine so
    # loaded that the twelve reservations spread over the first one-second delay.)
    assert statuses.count(401) in (3, 4), statuses
    assert statuses.count(429) == 12 - statuses.count(401), statuses


async def test_a_guesser_at_one_address_cannot_lock_the_owner_out(
    client: httpx.AsyncClient, account: Account
) -> None:
    attacker = random_address()
    statuses = [
        (await login(client, account.email, WRONG, **attacker)).status_code for _ in range(20)
    ]
    # Three quick guesses, then a growing delay (1 s, 2 s, 4 s…): the rest are refused
    # unchecked (a loaded machine's slow argon2 may let one or two delays run out).
    assert statuses[:3] == [401] * 3
    assert statuses.count(401) <= 5, statuses
    delayed = await login(client, account.email, PASSWORD, **attacker)
    assert "from this address" in _scope(delayed)  # even the right password waits there
    # The owner, elsewhere, is not slowed at all.
    assert (await login(client, account.email, PASSWORD)).status_code == 200


async def test_guessing_from_many_addresses_refuses_unknown_devices_only(
    client: httpx.AsyncClient,
) -> None:
    owner = await new_account(client, "owner")
    known = await login(client, owner.email, **random_address())
    assert known.status_code == 200
    for _ in range(10):  # LOGIN_MAX_FAILURES_PER_ACCOUNT, one guess per address
        assert (await login(client, owner.email, WRONG, **random_address())).status_code == 401
    refused = await login(client, owner.email, PASSWORD, **random_address())
    assert "unknown devices" in _scope(refused)
    # The owner's browser proves it logged in before, from wherever it is now.
    again = await login(client, owner.email, PASSWORD, **random_address(), **_device(known))
    assert again.status_code == 200
    # A device cookie is bound to its account: it is nobody's key to another one.
    other = await new_account(client, "other")
    for _ in range(10):
        await login(client, other.email, WRONG, **random_address())
    borrowed = await login(client, other.email, PASSWORD, **random_address(), **_device(known))
    assert borrowed.status_code == 429


async def test_a_known_device_has_a_small_budget_of_its_own(client: httpx.AsyncClient) -> None:
    owner = await new_account(client, "device")
    device = _device(await login(client, owner.email))
    for _ in range(10):  # the account is locked for unknown devices
        await login(client, owner.email, WRONG, **random_address())
    statuses = [
        (await login(client, owner.email, WRONG, **random_address(), **device)).status_code
        for _ in range(5)  # LOGIN_MAX_FAILURES_PER_DEVICE
    ]
    assert statuses == [401] * 5
    # Past its budget the cookie is an unknown device like any other: a stolen cookie
    # buys five guesses, not a way around the account's limit.
    spent = await login(client, owner.email, PASSWORD, **random_address(), **device)
    assert "unknown devices" in _scope(spent)


async def test_one_address_full_of_failures_does_not_lock_out_everyone_behind_it(
    client: httpx.AsyncClient,
) -> None:
    office = random_address()
    colleague = await new_account(client, "colleague")
    neighbour = await new_account(client, "neighbour")
    typist = await new_account(client, "typist")
    typist_login = await login(client, typist.email, **office)  # their browser, at the office
    # Someone behind the office NAT makes twenty failed logins (LOGIN_MAX_FAILURES_PER_ADDRESS).
    for _ in range(20):
        assert (await login(client, unique_email("spray"), WRONG, **office)).status_code == 401

    # Colleagues whose accounts have no recent failures still log in from the office...
    assert (await login(client, colleague.email, PASSWORD, **office)).status_code == 200
    assert (await login(client, neighbour.email, PASSWORD, **office)).status_code == 200
    # ...but guessing goes on at the rate the limit allows: one guess, then a long wait.
    assert (await login(client, unique_email("spray"), WRONG, **office)).status_code == 401
    assert "from this address" in _scope(
        await login(client, unique_email("spray"), WRONG, **office)
    )
    # An account with a recent failure is not tried from the throttled address...
    await login(client, typist.email, WRONG, **random_address())
    assert "from this address" in _scope(await login(client, typist.email, PASSWORD, **office))
    # ...unless from a device that proved itself before.
    assert (
        await login(client, typist.email, PASSWORD, **office, **_device(typist_login))
    ).status_code == 200


async def test_a_right_password_ends_the_delay_of_its_pair(
    client: httpx.AsyncClient, account: Account
) -> None:
    here = random_address()
    for _ in range(2):
        assert (await login(client, account.email, WRONG, **here)).status_code == 401
    assert (await login(client, account.email, PASSWORD, **here)).status_code == 200
    # The owner's typos before a success are forgiven: three quick tries again.
    for _ in range(3):
        assert (await login(client, account.email, WRONG, **here)).status_code == 401


async def test_changing_credentials_is_throttled_like_a_login(
    client: httpx.AsyncClient, account: Account
) -> None:
    here = random_address()
    responses = await asyncio.gather(
        *(
            client.patch(
                "/api/users/me",
                json={"password": "Brand-New-Horse-1", "current_password": f"{WRONG}-{i}"},
                headers={**account.headers, **here},
            )
            for i in range(12)
        )
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(403) in (3, 4), statuses
    assert statuses.count(429) == 12 - statuses.count(403), statuses
    # Deleting the account checks the password the same way, from the same budget.
    gone = await client.request(
        "DELETE",
        "/api/users/me",
        json={"current_password": PASSWORD},
        headers={**account.headers, **here},
    )
    assert gone.status_code == 429


async def test_the_client_address_is_the_one_the_trusted_proxy_appended(
    client: httpx.AsyncClient,
) -> None:
    # The tests' peer (127.0.0.1) is a trusted proxy: the client address is the last
    # X-Forwarded-For entry that is not one — what the proxy appended, not what the
    # client wrote before it. (Sign-ups are counted per address, one each.)
    proxy_saw = random_address()["X-Forwarded-For"]
    for i in range(10):
        forged = {"X-Forwarded-For": f"192.0.2.{i}, {proxy_saw}"}
        await register(client, unique_email("forwarded"), **forged)
    refused = await client.post(
        "/api/auth/register",
        json={"email": unique_email("forwarded"), "password": PASSWORD, "full_name": "F"},
        headers={"X-Forwarded-For": f"192.0.2.99, {proxy_saw}"},
    )
    assert refused.status_code == 429
