"""Registration and tokens: shapes, existing e-mails, weak passwords, the welcome job."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
from arq.connections import ArqRedis
from arq.jobs import Job
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_api.domain.jobs import OWNER_PREFIX, account_exists_job_id
from chorus_common.tokens import TokenService
from chorus_schema.models import User

from ..support import (
    PASSWORD,
    TEST_SECRET,
    login,
    new_account,
    random_address,
    register,
    unique_email,
)


async def _jobs_by_function(arq: ArqRedis, function: str) -> list[str]:
    ids = [raw.decode() for raw in await arq.zrange("arq:queue", 0, -1)]
    found = []
    for job_id in ids:
        info = await Job(job_id, arq, _deserializer=arq.job_deserializer).info()
        if info is not None and info.function == function:
            found.append(job_id)
    return found


async def _user_id(client: httpx.AsyncClient, email: str) -> int:
    response = await login(client, email)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    me = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    user_id: int = me.json()["id"]
    return user_id


async def test_register_accepts_and_the_account_logs_in(client: httpx.AsyncClient) -> None:
    email = unique_email("Mixed.Case")
    response = await client.post(
        "/api/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Ada Lovelace"},
        headers=random_address(),
    )
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"email", "status", "message"}
    assert body["email"] == email.lower()  # stored lower-cased
    assert body["status"] == "accepted"
    token = (await login(client, email)).json()["access_token"]
    me = (await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})).json()
    assert (me["email"], me["full_name"]) == (email.lower(), "Ada Lovelace")


async def test_an_existing_email_is_answered_like_a_new_one_and_its_owner_mailed(
    client: httpx.AsyncClient, arq: ArqRedis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = unique_email("taken")
    first = await register(client, email)
    owner_id = await _user_id(client, email)
    async with sessions.begin() as session:  # the worker sent the welcome mail
        await session.execute(
            update(User).where(User.id == owner_id).values(welcome_sent_at=func.now())
        )
    again = await client.post(
        "/api/auth/register",
        json={"email": email.upper(), "password": "Other-Horse-77", "full_name": "Mallory"},
        headers=random_address(),
    )
    # Same status, same body (the stored address is what the caller typed, normalised).
    assert again.status_code == first.status_code == 202
    assert again.json() == first.json()
    # The account is untouched: the old password works, the new one does not.
    assert (await login(client, email)).status_code == 200
    assert (await login(client, email, "Other-Horse-77")).status_code == 401
    # Its owner is told, at most once an hour however often it happens.
    await register(client, email, "Third-Horse-99")
    job_id = account_exists_job_id(owner_id)
    assert await _jobs_by_function(arq, "send_account_exists_email") == [job_id]
    info = await Job(job_id, arq, _deserializer=arq.job_deserializer).info()
    assert info is not None
    assert info.args == (owner_id,)
    assert await arq.get(OWNER_PREFIX + job_id) == str(owner_id).encode()


async def test_an_existing_email_costs_the_time_a_new_one_costs(
    client: httpx.AsyncClient,
) -> None:
    taken = unique_email("timing")
    await register(client, taken)

    async def timed(email: str) -> float:
        started = time.perf_counter()
        await register(client, email)
        return time.perf_counter() - started

    new = [await timed(unique_email("timing-new")) for _ in range(5)]
    existing = [await timed(taken) for _ in range(5)]
    # argon2 (tens to hundreds of ms) runs either way; without it an existing e-mail would
    # answer in a few ms — a ratio far below this bound, whatever the machine's load.
    assert statistics.median(existing) > 0.4 * statistics.median(new), (new, existing)


async def test_weak_passwords_are_422_with_reasons(client: httpx.AsyncClient) -> None:
    email = unique_email()
    for password, reason in [
        ("abcdefghijkl", "two of"),
        (email, "e-mail"),
    ]:
        response = await client.post(
            "/api/auth/register",
            json={"email": email, "password": password, "full_name": "W"},
            headers=random_address(),
        )
        assert response.status_code == 422, password
        error = response.json()["error"]
        assert error["code"] == "weak_password"
        assert any(reason in r for r in error["details"])
    short = await client.post(
        "/api/auth/register",
        json={"email": email, "password": "Sh0rt!", "full_name": "W"},
        headers=random_address(),
    )
    assert short.status_code == 422
    assert short.json()["error"]["code"] == "validation_error"


async def test_invalid_bodies_are_422(client: httpx.AsyncClient) -> None:
    for body in [
        {"email": "not-an-email", "password": PASSWORD, "full_name": "X"},
        {"email": unique_email(), "password": PASSWORD},
        {"email": unique_email(), "password": PASSWORD, "full_name": "x" * 201},
        {"email": unique_email(), "password": PASSWORD, "full_name": "nul\x00"},
        {"email": unique_email(), "password": PASSWORD, "full_name": "X", "admin": True},
    ]:
        response = await client.post("/api/auth/register", json=body, headers=random_address())
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"


async def test_registration_enqueues_one_welcome_job_even_when_retried(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    email = unique_email("welcome")
    await register(client, email)
    await register(client, email)  # the first response was "lost"
    user_id = await _user_id(client, email)

    welcome = [
        j for j in await _jobs_by_function(arq, "send_welcome_email") if j.endswith(f":{user_id}")
    ]
    assert welcome == [f"welcome:{user_id}"]
    info = await Job(f"welcome:{user_id}", arq, _deserializer=arq.job_deserializer).info()
    assert info is not None
    assert info.args == (user_id,)
    assert await arq.get(OWNER_PREFIX + f"welcome:{user_id}") == str(user_id).encode()
    assert 0 < await arq.ttl(OWNER_PREFIX + f"welcome:{user_id}") <= 7 * 86_400
    # The welcome mail was still due, so the retry repaired that, not an alarm to the owner.
    assert not [
        j for j in await _jobs_by_function(arq, "send_account_exists_email") if f":{user_id}:" in j
    ]


async def test_a_retry_enqueues_the_welcome_job_a_lost_first_attempt_missed(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    email = unique_email("lost")
    await register(client, email)
    user_id = await _user_id(client, email)
    # As if the process died between the commit and the enqueue.
    await arq.zrem("arq:queue", f"welcome:{user_id}")
    await arq.delete(f"arq:job:welcome:{user_id}")
    await register(client, email)
    assert await arq.zscore("arq:queue", f"welcome:{user_id}") is not None


async def test_registration_records_an_analytics_event(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    email = unique_email("analytics")
    await register(client, email)
    user_id = await _user_id(client, email)
    # The background task runs after the response: wait for it with a deadline.
    for _ in range(200):
        for job_id in await _jobs_by_function(arq, "record_analytics"):
            info = await Job(job_id, arq, _deserializer=arq.job_deserializer).info()
            assert info is not None
            if info.args == ("user.registered", {"user_id": user_id}):
                return
        await asyncio.sleep(0.01)
    raise AssertionError("no record_analytics job for the registration")


async def test_concurrent_duplicate_registrations_make_one_account_and_one_job(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    email = unique_email("race")
    body = {"email": email, "password": PASSWORD, "full_name": "Racer"}
    responses = await asyncio.gather(
        *(client.post("/api/auth/register", json=body, headers=random_address()) for _ in range(4))
    )
    assert [r.status_code for r in responses] == [202] * 4
    assert len({r.text for r in responses}) == 1
    user_id = await _user_id(client, email)
    welcome = [
        j for j in await _jobs_by_function(arq, "send_welcome_email") if j.endswith(f":{user_id}")
    ]
    assert welcome == [f"welcome:{user_id}"]


async def test_sign_ups_are_limited_per_address(client: httpx.AsyncClient) -> None:
    address = random_address()
    for _ in range(10):  # SIGNUP_MAX_PER_ADDRESS
        await register(client, unique_email("burst"), **address)
    refused = await client.post(
        "/api/auth/register",
        json={"email": unique_email("burst"), "password": PASSWORD, "full_name": "One Too Many"},
        headers=address,
    )
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_signups"
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    # Another address is not affected.
    await register(client, unique_email("burst"))


async def test_token_shape_and_claims(client: httpx.AsyncClient) -> None:
    account = await new_account(client)
    response = await login(client, account.email.upper())  # e-mails are case-insensitive
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    claims = TokenService(secret=TEST_SECRET, issuer="chorus").verify(body["access_token"])
    assert claims.subject == str(account.id)
    assert claims.version == 1
    device = response.cookies["chorus_device"]
    cookie = response.headers["set-cookie"].lower()
    assert device.count(".") == 2
    for attribute in ("httponly", "samesite=strict", "path=/api", "max-age="):
        assert attribute in cookie


async def test_wrong_password_and_unknown_email_are_the_same_401(
    client: httpx.AsyncClient,
) -> None:
    account = await new_account(client)
    wrong = await login(client, account.email, "Wrong-Horse-42")
    unknown = await login(client, unique_email("nobody"), PASSWORD)
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "invalid_credentials",
            "message": "Wrong e-mail or password.",
        }
        assert response.headers["www-authenticate"] == "Bearer"
        assert "set-cookie" not in response.headers


async def test_token_form_is_validated(client: httpx.AsyncClient) -> None:
    missing = await client.post("/api/auth/token", data={"username": "a@example.com"})
    assert missing.status_code == 422
    json_body = await client.post(
        "/api/auth/token", json={"username": "a@example.com", "password": PASSWORD}
    )
    assert json_body.status_code == 422
    grant = await client.post(
        "/api/auth/token",
        data={
            "username": "a@example.com",
            "password": PASSWORD,
            "grant_type": "client_credentials",
        },
    )
    assert grant.status_code == 422
