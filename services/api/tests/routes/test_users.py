"""The current account, token checks, and an account with its orders."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from arq.connections import ArqRedis

from chorus_api.schemas.users import UserWithOrdersOut
from chorus_common.tokens import ACCOUNT_DELETED, TokenService, token_version_key

from ..support import (
    PASSWORD,
    TEST_SECRET,
    Account,
    login,
    new_account,
    random_address,
    unique_email,
)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(response: httpx.Response) -> str:
    token: str = response.json()["access_token"]
    return token


async def _refused_everywhere(client: httpx.AsyncClient, account_id: int, token: str) -> None:
    """Every kind of authenticated route answers 401 ``invalid_token`` to ``token``."""
    for method, path in [
        ("GET", "/api/users/me"),
        ("GET", f"/api/users/{account_id}"),  # the fast path
        ("GET", "/api/orders"),
        ("GET", "/api/dashboard"),
    ]:
        response = await client.request(method, path, headers=_bearer(token))
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["code"] == "invalid_token", path


async def test_me(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get("/api/users/me", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == account.id
    assert body["email"] == account.email
    assert "password_hash" not in body


async def test_missing_forged_expired_and_garbage_tokens_are_401(
    client: httpx.AsyncClient, account: Account
) -> None:
    forged = TokenService(secret="another-secret-of-sufficient-length!!", issuer="chorus")
    expired = TokenService(secret=TEST_SECRET, issuer="chorus").issue(
        account.id, ttl=timedelta(minutes=-5)
    )
    other_issuer = TokenService(secret=TEST_SECRET, issuer="elsewhere").issue(account.id)
    cases = {
        "missing": {},
        "forged": {"Authorization": f"Bearer {forged.issue(account.id)}"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "other issuer": {"Authorization": f"Bearer {other_issuer}"},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
    }
    for name, headers in cases.items():
        response = await client.get("/api/users/me", headers=headers)
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"] == "Bearer", name
        expected = "not_authenticated" if name in ("missing", "basic") else "invalid_token"
        assert response.json()["error"]["code"] == expected, name


async def test_update_name(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.patch(
        "/api/users/me", json={"full_name": "Renamed"}, headers=account.headers
    )
    assert response.status_code == 200
    assert response.json()["full_name"] == "Renamed"
    me = await client.get("/api/users/me", headers=account.headers)
    assert me.json()["full_name"] == "Renamed"


async def test_changing_credentials_needs_the_current_password(
    client: httpx.AsyncClient, account: Account
) -> None:
    new_email = unique_email("moved")
    no_proof = await client.patch(
        "/api/users/me", json={"email": new_email}, headers=account.headers
    )
    assert no_proof.status_code == 403
    wrong = await client.patch(
        "/api/users/me",
        json={"password": "Brand-New-Pass-1", "current_password": "Wrong-Horse-42"},
        headers={**account.headers, **random_address()},
    )
    assert wrong.status_code == 403
    weak = await client.patch(
        "/api/users/me",
        json={"password": "aaaaaaaaaaaa", "current_password": PASSWORD},
        headers=account.headers,
    )
    assert weak.status_code == 422
    assert weak.json()["error"]["code"] == "weak_password"
    moved = await client.patch(
        "/api/users/me",
        json={
            "email": new_email.upper(),
            "password": "Brand-New-Pass-1",
            "current_password": PASSWORD,
        },
        headers=account.headers,
    )
    assert moved.status_code == 200
    assert moved.json()["email"] == new_email
    assert (await login(client, new_email, "Brand-New-Pass-1")).status_code == 200
    assert (await login(client, account.email, PASSWORD)).status_code == 401


async def test_email_of_another_account_is_409(client: httpx.AsyncClient, account: Account) -> None:
    other = await new_account(client)
    response = await client.patch(
        "/api/users/me",
        json={"email": other.email, "current_password": PASSWORD},
        headers=account.headers,
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"


async def test_a_new_password_revokes_every_token_of_the_account(
    client: httpx.AsyncClient, account: Account, arq: ArqRedis
) -> None:
    second = (await login(client, account.email)).json()["access_token"]  # another device
    changed = await client.patch(
        "/api/users/me",
        json={"password": "Brand-New-Pass-1", "current_password": PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 200
    # Both tokens end at once in this process (the others within a second: the cache).
    for token in (account.token, second):
        await _refused_everywhere(client, account.id, token)
    revoked = await client.get("/api/users/me", headers=account.headers)
    assert "revoked" in revoked.json()["error"]["message"]
    # Redis holds the account's new minimum version for the other services.
    assert await arq.get(token_version_key(str(account.id))) == b"2"
    fresh = await login(client, account.email, "Brand-New-Pass-1")
    claims = TokenService(secret=TEST_SECRET, issuer="chorus").verify(fresh.json()["access_token"])
    assert claims.version == 2
    assert (
        await client.get("/api/users/me", headers=_bearer(fresh.json()["access_token"]))
    ).status_code == 200
    # A new name is no reason to end anyone's session.
    renamed = await client.patch(
        "/api/users/me", json={"full_name": "Still Here"}, headers=_bearer(_token(fresh))
    )
    assert renamed.status_code == 200
    assert (await client.get("/api/users/me", headers=_bearer(_token(fresh)))).status_code == 200


async def test_revocations_lost_by_redis_come_back_from_postgres(
    client: httpx.AsyncClient, account: Account, arq: ArqRedis
) -> None:
    changed = await client.patch(
        "/api/users/me",
        json={"password": "Brand-New-Pass-1", "current_password": PASSWORD},
        headers=account.headers,
    )
    assert changed.status_code == 200
    key = token_version_key(str(account.id))
    await arq.delete(key)  # Redis restarted without its data, or the write was lost
    # Every api process copies live revocations back (TOKEN_RESYNC_SECONDS, 1 s here)...
    for _ in range(200):
        if await arq.get(key) is not None:
            break
        await asyncio.sleep(0.05)
    assert await arq.get(key) == b"2"
    assert 86_000 < await arq.ttl(key) <= 86_460
    # ...so the old token stays refused by every process, whatever it remembered.
    await _refused_everywhere(client, account.id, account.token)


async def test_deleting_the_account_needs_its_password(
    client: httpx.AsyncClient, account: Account
) -> None:
    here = random_address()
    no_body = await client.delete("/api/users/me", headers={**account.headers, **here})
    assert no_body.status_code == 422
    wrong = await client.request(
        "DELETE",
        "/api/users/me",
        json={"current_password": "Wrong-Horse-42"},
        headers={**account.headers, **here},
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    assert (await client.get("/api/users/me", headers=account.headers)).status_code == 200


async def test_delete_me_removes_the_account_and_ends_its_tokens(
    client: httpx.AsyncClient, account: Account, arq: ArqRedis
) -> None:
    order = await client.post(
        "/api/orders",
        json={"item": "gone", "quantity": 1, "amount_cents": 1},
        headers=account.headers,
    )
    assert order.status_code == 201
    deleted = await client.request(
        "DELETE", "/api/users/me", json={"current_password": PASSWORD}, headers=account.headers
    )
    assert deleted.status_code == 204
    # The token is still signed and unexpired, but its account revoked it on the way out.
    await _refused_everywhere(client, account.id, account.token)
    created = await client.post(
        "/api/orders", json={"item": "x", "quantity": 1, "amount_cents": 1}, headers=account.headers
    )
    assert created.status_code == 401
    assert (await login(client, account.email)).status_code == 401
    assert await arq.get(token_version_key(str(account.id))) == str(ACCOUNT_DELETED).encode()


async def test_user_with_orders(client: httpx.AsyncClient, account: Account) -> None:
    for item in ("first", "second"):
        created = await client.post(
            "/api/orders",
            json={"item": item, "quantity": 1, "amount_cents": 100},
            headers=account.headers,
        )
        assert created.status_code == 201
    response = await client.get(f"/api/users/{account.id}", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == account.id
    assert [o["item"] for o in body["orders"]] == ["second", "first"]  # newest first
    assert set(body["orders"][0]) == {
        "id",
        "item",
        "quantity",
        "amount_cents",
        "status",
        "created_at",
    }
    # Written by orjson, byte for byte what the published model would serialise.
    assert response.headers["content-type"] == "application/json"
    model = UserWithOrdersOut.model_validate(body)
    assert response.content == model.model_dump_json().encode()
    assert body["created_at"].endswith("Z")


async def test_user_without_orders(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get(f"/api/users/{account.id}", headers=account.headers)
    assert response.status_code == 200
    assert response.json()["orders"] == []
    assert response.json()["email"] == account.email


async def test_other_and_missing_users_are_404(client: httpx.AsyncClient, account: Account) -> None:
    other = await new_account(client)
    for user_id in (other.id, 2**62):
        response = await client.get(f"/api/users/{user_id}", headers=account.headers)
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "No such user."}}
    assert (await client.get(f"/api/users/{account.id}")).status_code == 401
    assert (await client.get("/api/users/0", headers=account.headers)).status_code == 422
    assert (await client.get("/api/users/abc", headers=account.headers)).status_code == 422


def _requests_total(metrics: str, status: int) -> float:
    labels = f'method="GET",route="/api/users/{{user_id}}",status="{status}"'
    name = f"chorus_http_requests_total{{{labels}}}"
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_user_with_orders_fast_path_behaves_like_the_route(
    client: httpx.AsyncClient, account: Account
) -> None:
    before = (await client.get("/metrics")).text
    plain = await client.get(f"/api/users/{account.id}", headers=account.headers)
    padded = await client.get(f"/api/users/{account.id:08d}", headers=account.headers)
    assert plain.status_code == padded.status_code == 200
    assert plain.content == padded.content
    assert plain.headers["x-request-id"] != padded.headers["x-request-id"]
    # Ids the fast path leaves to FastAPI's route: its validation answers, as before.
    for raw in ("0", str(2**63), "-1", "1e3"):
        response = await client.get(f"/api/users/{raw}", headers=account.headers)
        assert response.status_code == 422, raw
        assert response.json()["error"]["code"] == "validation_error"
    missing = await client.get(f"/api/users/{account.id}")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "not_authenticated"
    forged = TokenService(secret="x" * 48, issuer="chorus").issue(account.id)
    bad = await client.get(
        f"/api/users/{account.id}", headers={"Authorization": f"Bearer {forged}"}
    )
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_token"
    after = (await client.get("/metrics")).text
    # Counted under the route template, like every other route.
    assert _requests_total(after, 200) == _requests_total(before, 200) + 2
    assert _requests_total(after, 422) == _requests_total(before, 422) + 4
    assert _requests_total(after, 401) == _requests_total(before, 401) + 2
