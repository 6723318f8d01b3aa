"""Registration and tokens: shapes, duplicates, weak passwords, limits, the welcome job."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
from arq.connections import ArqRedis
from arq.jobs import Job

from chorus_api.domain.jobs import OWNER_PREFIX
from chorus_common.tokens import TokenService

from ..support import PASSWORD, TEST_SECRET, login, register, unique_email


async def _jobs_by_function(arq: ArqRedis, function: str) -> list[str]:
    ids = [raw.decode() for raw in await arq.zrange("arq:queue", 0, -1)]
    found = []
    for job_id in ids:
        info = await Job(job_id, arq, _deserializer=arq.job_deserializer).info()
        if info is not None and info.function == function:
            found.append(job_id)
    return found


async def test_register_returns_the_user(client: httpx.AsyncClient) -> None:
    email = unique_email("Mixed.Case")
    response = await client.post(
        "/api/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Ada Lovelace"},
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "full_name", "created_at"}
    assert isinstance(body["id"], int)
    assert body["email"] == email.lower()  # stored lower-cased
    assert body["full_name"] == "Ada Lovelace"
    datetime.fromisoformat(body["created_at"])


async def test_duplicate_email_is_409_whatever_the_case(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email)
    response = await client.post(
        "/api/auth/register",
        json={"email": email.upper(), "password": PASSWORD, "full_name": "Twin"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"


async def test_weak_passwords_are_422_with_reasons(client: httpx.AsyncClient) -> None:
    email = unique_email()
    for password, reason in [
        ("abcdefghijkl", "two of"),
        (email, "e-mail"),
    ]:
        response = await client.post(
            "/api/auth/register", json={"email": email, "password": password, "full_name": "W"}
        )
        assert response.status_code == 422, password
        error = response.json()["error"]
        assert error["code"] == "weak_password"
        assert any(reason in r for r in error["details"])
    short = await client.post(
        "/api/auth/register", json={"email": email, "password": "Sh0rt!", "full_name": "W"}
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
        response = await client.post("/api/auth/register", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"


async def test_registration_enqueues_one_welcome_job_even_when_retried(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    email = unique_email("welcome")
    body = {"email": email, "password": PASSWORD, "full_name": "Welcome Me"}
    first = await client.post("/api/auth/register", json=body)
    assert first.status_code == 201
    user_id = first.json()["id"]
    retried = await client.post("/api/auth/register", json=body)  # the response was "lost"
    assert retried.status_code == 409

    welcome = [
        j for j in await _jobs_by_function(arq, "send_welcome_email") if j.endswith(f":{user_id}")
    ]
    assert welcome == [f"welcome:{user_id}"]
    info = await Job(f"welcome:{user_id}", arq, _deserializer=arq.job_deserializer).info()
    assert info is not None
    assert info.args == (user_id,)
    assert await arq.get(OWNER_PREFIX + f"welcome:{user_id}") == str(user_id).encode()
    assert 0 < await arq.ttl(OWNER_PREFIX + f"welcome:{user_id}") <= 7 * 86_400


async def test_a_retry_enqueues_the_welcome_job_a_lost_first_attempt_missed(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    email = unique_email("lost")
    body = {"email": email, "password": PASSWORD, "full_name": "Lost Job"}
    user_id = (await client.post("/api/auth/register", json=body)).json()["id"]
    # As if the process died between the commit and the enqueue.
    await arq.zrem("arq:queue", f"welcome:{user_id}")
    await arq.delete(f"arq:job:welcome:{user_id}")
    assert (await client.post("/api/auth/register", json=body)).status_code == 409
    assert await arq.zscore("arq:queue", f"welcome:{user_id}") is not None


async def test_registration_records_an_analytics_event(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    user_id = await register(client, unique_email("analytics"))
    # The background task runs after the response: wait for it with a deadline.
    for _ in range(200):
        for job_id in await _jobs_by_function(arq, "record_analytics"):
            info = await Job(job_id, arq, _deserializer=arq.job_deserializer).info()
            assert info is not None
            if info.args == ("user.registered", {"user_id": user_id}):
                return
        await asyncio.sleep(0.01)
    raise AssertionError("no record_analytics job for the registration")


async def test_token_shape_and_claims(client: httpx.AsyncClient) -> None:
    email = unique_email()
    user_id = await register(client, email)
    response = await login(client, email.upper())  # e-mails are case-insensitive
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    claims = TokenService(secret=TEST_SECRET, issuer="chorus").verify(body["access_token"])
    assert claims.subject == str(user_id)


async def test_wrong_password_and_unknown_email_are_the_same_401(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await register(client, email)
    wrong = await login(client, email, "Wrong-Horse-42", **{"X-Forwarded-For": "198.51.100.1"})
    unknown = await login(
        client, unique_email("nobody"), PASSWORD, **{"X-Forwarded-For": "198.51.100.1"}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "invalid_credentials",
            "message": "Wrong e-mail or password.",
        }
        assert response.headers["www-authenticate"] == "Bearer"


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


async def test_account_is_locked_after_repeated_failures(client: httpx.AsyncClient) -> None:
    email = unique_email("locked")
    await register(client, email)
    # Each attempt from a different address: the account limit (5) is what trips.
    for i in range(5):
        failed = await login(client, email, "Wrong-Horse-42", **{"X-Forwarded-For": f"192.0.2.{i}"})
        assert failed.status_code == 401
    locked = await login(client, email, PASSWORD, **{"X-Forwarded-For": "192.0.2.100"})
    assert locked.status_code == 429  # even the right password: the account is locked
    assert locked.json()["error"]["code"] == "too_many_attempts"
    assert 0 < int(locked.headers["retry-after"]) <= 900


async def test_address_is_locked_after_repeated_failures(client: httpx.AsyncClient) -> None:
    address = {"X-Forwarded-For": "203.0.113.77"}
    for _ in range(20):
        failed = await login(client, unique_email("spray"), "Wrong-Horse-42", **address)
        assert failed.status_code == 401
    victim = unique_email("victim")
    await register(client, victim)
    blocked = await login(client, victim, PASSWORD, **address)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    # Another address is not affected, and neither is the account.
    assert (
        await login(client, victim, PASSWORD, **{"X-Forwarded-For": "203.0.113.78"})
    ).status_code == 200


async def test_success_clears_the_account_counter(client: httpx.AsyncClient) -> None:
    email = unique_email("reset")
    await register(client, email)
    for round_ in range(2):
        for i in range(4):
            address = {"X-Forwarded-For": f"198.51.100.{100 + round_ * 10 + i}"}
            assert (await login(client, email, "Wrong-Horse-42", **address)).status_code == 401
        assert (await login(client, email)).status_code == 200


async def test_concurrent_duplicate_registrations_make_one_account_and_one_job(
    client: httpx.AsyncClient, arq: ArqRedis
) -> None:
    email = unique_email("race")
    body = {"email": email, "password": PASSWORD, "full_name": "Racer"}
    responses = await asyncio.gather(
        *(client.post("/api/auth/register", json=body) for _ in range(4))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409]
    user_id = next(r.json()["id"] for r in responses if r.status_code == 201)
    welcome = [
        j for j in await _jobs_by_function(arq, "send_welcome_email") if j.endswith(f":{user_id}")
    ]
    assert welcome == [f"welcome:{user_id}"]
