"""Virtual keys, teams, budgets and usage: the lifecycle, who may do what, and Redis's copy."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_common.virtual_keys import (
    INVALIDATION_CHANNEL,
    Budget,
    KeyRecord,
    directory_key,
    secret_digest,
    user_budget_key,
)
from chorus_devstack.testing import base_url, serve_app
from chorus_schema.models import LlmUsageEvent

from ..support import Account, login, new_account, register

ADMIN = f"keys-admin-{os.urandom(4).hex()}@example.com"
MAX_KEYS = 3


@pytest.fixture(scope="module")
async def api(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An api with an administrator and at most three live keys per owner."""
    own = settings.model_copy(update={"admin_emails": ADMIN, "keys_max_per_owner": MAX_KEYS})
    async with (
        serve_app(create_app(own)) as server,
        httpx.AsyncClient(base_url=base_url(server), trust_env=False, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
async def admin(api: httpx.AsyncClient) -> Account:
    """The account named in ADMIN_EMAILS."""
    await register(api, ADMIN)
    token = (await login(api, ADMIN)).json()["access_token"]
    me = await api.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    return Account(me.json()["id"], ADMIN, "", token)


@pytest.fixture
async def redis(settings: ApiSettings) -> AsyncIterator[aioredis.Redis]:
    """A client of the api's Redis."""
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def _record(redis: aioredis.Redis, secret: str) -> KeyRecord | None:
    raw = await redis.get(directory_key(secret_digest(secret)))
    return None if raw is None else KeyRecord.from_json(raw)


async def test_a_key_is_shown_once_stored_as_a_digest_and_copied_for_the_gateways(
    api: httpx.AsyncClient, redis: aioredis.Redis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    me = await new_account(api, "keys")
    body = {
        "name": "notebook",
        "models": ["assistant"],
        "tokens_per_minute": 1000,
        "budget": {"amount_micros": 5_000_000, "period": "month"},
    }
    created = await api.post("/api/keys", json=body, headers=me.headers)
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    key = created.json()["key"]
    assert secret.startswith("sk-chorus-")
    assert secret.startswith(key["prefix"])
    assert key["budget"] == {"amount_micros": 5_000_000, "period": "month", "spent_micros": 0}
    # Never again: not in the list, not in the key, not in the database.
    listed = await api.get("/api/keys", headers=me.headers)
    assert [k["id"] for k in listed.json()] == [key["id"]]
    assert secret not in listed.text
    async with sessions() as session:
        rows = (await session.execute(text("SELECT * FROM virtual_keys"))).all()
        dump = json.dumps([str(row) for row in rows])
    assert secret not in dump
    assert secret_digest(secret) in dump
    record = await _record(redis, secret)
    assert record is not None
    assert (record.id, record.owner, record.models) == (key["id"], f"user:{me.id}", ("assistant",))
    assert record.tokens_per_minute == 1000
    assert [(b.scope, b.limit_micros, b.period) for b in record.budgets] == [
        (f"vkey:{key['id']}", 5_000_000, "month")
    ]


async def test_revoking_deletes_the_copy_and_tells_every_gateway(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    me = await new_account(api, "revoke")
    created = (await api.post("/api/keys", json={"name": "k"}, headers=me.headers)).json()
    secret = created["secret"]
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(INVALIDATION_CHANNEL)
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        revoked = await api.delete(f"/api/keys/{created['key']['id']}", headers=me.headers)
        assert revoked.status_code == 204
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None
    assert message["data"].decode() == secret_digest(secret)
    assert await _record(redis, secret) is None
    shown = await api.get(f"/api/keys/{created['key']['id']}", headers=me.headers)
    assert shown.json()["revoked_at"] is not None
    assert (await api.get("/api/keys", headers=me.headers)).json() == []


async def test_rotation_keeps_the_old_secret_for_the_grace_period_only(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    me = await new_account(api, "rotate")
    created = (await api.post("/api/keys", json={"name": "k"}, headers=me.headers)).json()
    old, key_id = created["secret"], created["key"]["id"]
    rotated = await api.post(
        f"/api/keys/{key_id}/rotate", json={"grace_seconds": 60}, headers=me.headers
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old
    assert (await _record(redis, new)) is not None
    assert (await _record(redis, old)) is not None
    ttl = await redis.pttl(directory_key(secret_digest(old)))
    assert 0 < ttl <= 60_000
    assert await redis.pttl(directory_key(secret_digest(new))) == -1  # no expiry
    # Rotating again without grace ends the previous secret at once.
    again = await api.post(
        f"/api/keys/{key_id}/rotate", json={"grace_seconds": 0}, headers=me.headers
    )
    assert await _record(redis, new) is None
    assert await _record(redis, again.json()["secret"]) is not None


async def test_an_expired_key_is_not_copied_and_bounds_are_enforced(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    me = await new_account(api, "bounds")
    soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    created = await api.post(
        "/api/keys", json={"name": "brief", "expires_at": soon}, headers=me.headers
    )
    ttl = await redis.pttl(directory_key(secret_digest(created.json()["secret"])))
    assert 0 < ttl <= 30_000
    for _ in range(MAX_KEYS - 1):
        assert (
            await api.post("/api/keys", json={"name": "k"}, headers=me.headers)
        ).status_code == 201
    refused = await api.post("/api/keys", json={"name": "one too many"}, headers=me.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "limit_reached"
    for bad in (
        {"name": ""},
        {"name": "x", "budget": {"amount_micros": -1, "period": "day"}},
        {"name": "x", "budget": {"amount_micros": 1, "period": "week"}},
        {"name": "x", "tokens_per_minute": "10"},
        {"name": "x", "expires_at": "2030-01-01T00:00:00"},  # no time zone
        {"name": "x\u0000"},
        {"name": "x", "unknown": 1},
    ):
        response = await api.post("/api/keys", json=bad, headers=me.headers)
        assert response.status_code == 422, (bad, response.text)


async def test_teams_share_keys_and_a_budget_only_an_administrator_sets(
    api: httpx.AsyncClient, redis: aioredis.Redis, admin: Account
) -> None:
    lead, member, stranger = [await new_account(api, p) for p in ("lead", "member", "stranger")]
    team = await api.post(
        "/api/teams", json={"name": f"ml-{os.urandom(3).hex()}"}, headers=lead.headers
    )
    assert team.status_code == 201, team.text
    team_id = team.json()["id"]
    added = await api.post(
        f"/api/teams/{team_id}/members", json={"email": member.email}, headers=lead.headers
    )
    assert added.json()["role"] == "member"
    key = await api.post(
        "/api/keys", json={"name": "shared", "team_id": team_id}, headers=lead.headers
    )
    assert key.status_code == 201
    key_id, secret = key.json()["key"]["id"], key.json()["secret"]
    # A member sees the team's key but may not revoke it or make one; a stranger sees nothing.
    assert [k["id"] for k in (await api.get("/api/keys", headers=member.headers)).json()] == [
        key_id
    ]
    assert (await api.delete(f"/api/keys/{key_id}", headers=member.headers)).status_code == 403
    made = await api.post(
        "/api/keys", json={"name": "x", "team_id": team_id}, headers=member.headers
    )
    assert made.status_code == 403
    assert (await api.get(f"/api/keys/{key_id}", headers=stranger.headers)).status_code == 404
    assert (await api.get(f"/api/teams/{team_id}", headers=stranger.headers)).status_code == 404
    # The team's own admin cannot raise its cap; the administrator sets it.
    budget = {"budget": {"amount_micros": 2_000_000, "period": "day"}}
    refused = await api.put(f"/api/teams/{team_id}/budget", json=budget, headers=lead.headers)
    assert refused.status_code == 403
    set_ = await api.put(f"/api/teams/{team_id}/budget", json=budget, headers=admin.headers)
    assert set_.status_code == 200, set_.text
    assert set_.json()["budget"]["spent_micros"] == 0
    record = await _record(redis, secret)
    assert record is not None
    assert record.owner == f"team:{team_id}"
    assert [(b.scope, b.limit_micros) for b in record.budgets] == [(f"team:{team_id}", 2_000_000)]
    # The administrator sees every key.
    everything = await api.get("/api/keys", params={"all": "true"}, headers=admin.headers)
    assert key_id in [k["id"] for k in everything.json()]
    assert (
        await api.get("/api/keys", params={"all": "true"}, headers=lead.headers)
    ).status_code == 403
    # The last admin cannot leave; a member can.
    gone = await api.delete(f"/api/teams/{team_id}/members/{lead.id}", headers=lead.headers)
    assert gone.status_code == 403
    left = await api.delete(f"/api/teams/{team_id}/members/{member.id}", headers=member.headers)
    assert left.status_code == 204
    assert (await api.get(f"/api/keys/{key_id}", headers=member.headers)).status_code == 404


async def test_a_user_budget_only_an_administrator_sets_is_copied_for_the_gateways(
    api: httpx.AsyncClient, redis: aioredis.Redis, admin: Account
) -> None:
    me, stranger = [await new_account(api, p) for p in ("capped", "other")]
    url = f"/api/users/{me.id}/budget"
    budget = {"budget": {"amount_micros": 3_000_000, "period": "month"}}
    # Not by the user themselves, nor anyone else but an administrator.
    for who in (me, stranger):
        refused = await api.put(url, json=budget, headers=who.headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
    assert (await api.get(url, headers=me.headers)).json() == {"user_id": me.id, "budget": None}
    for bad in (
        {"budget": {"amount_micros": -1, "period": "day"}},
        {"budget": {"amount_micros": 1, "period": "week"}},
        {"budget": {"amount_micros": "1", "period": "day"}},
        {"budget": {"amount_micros": 10**16, "period": "day"}},
        {"budget": {"amount_micros": 1, "period": "day", "extra": 1}},
        {},
        [],
    ):
        invalid = await api.put(url, json=bad, headers=admin.headers)
        assert invalid.status_code == 422, (bad, invalid.text)
    zero = await api.put("/api/users/0/budget", json=budget, headers=admin.headers)
    assert zero.status_code == 422
    missing = await api.put(f"/api/users/{2**62}/budget", json=budget, headers=admin.headers)
    assert missing.status_code == 404
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(INVALIDATION_CHANNEL)
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        set_ = await api.put(url, json=budget, headers=admin.headers)
        assert set_.status_code == 200, set_.text
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None
    assert message["data"].decode() == f"user:{me.id}"
    expected = {"amount_micros": 3_000_000, "period": "month", "spent_micros": 0}
    assert set_.json() == {"user_id": me.id, "budget": expected}
    raw = await redis.get(user_budget_key(me.id))
    assert raw is not None
    assert Budget.from_json(raw) == Budget(f"user:{me.id}", 3_000_000, "month")
    # The user reads their own; nobody else but an administrator does.
    assert (await api.get(url, headers=me.headers)).json()["budget"] == expected
    assert (await api.get(url, headers=stranger.headers)).status_code == 404
    assert (await api.get(url, headers=admin.headers)).json()["budget"] == expected
    # A Redis that lost it gets it back at the next resync (every second in the tests).
    await redis.delete(user_budget_key(me.id))
    for _ in range(100):
        if await redis.get(user_budget_key(me.id)) is not None:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the budget was never copied back")
    # Removed: the gateways' copy goes too.
    cleared = await api.put(url, json={"budget": None}, headers=admin.headers)
    assert cleared.json() == {"user_id": me.id, "budget": None}
    assert await redis.get(user_budget_key(me.id)) is None


async def test_usage_is_read_per_key_team_and_user_by_those_allowed(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], admin: Account
) -> None:
    me, other = await new_account(api, "usage"), await new_account(api, "other")
    key = (await api.post("/api/keys", json={"name": "k"}, headers=me.headers)).json()["key"]
    today = datetime.now(UTC)
    async with sessions.begin() as session:
        for i, (model, days_ago, cost) in enumerate(
            [("mock-gpt", 0, 100), ("mock-gpt", 0, 50), ("mock-gpt-mini", 1, 7)]
        ):
            session.add(
                LlmUsageEvent(
                    request_id=f"{os.urandom(8).hex()}-{i}",
                    subject=f"vkey:{key['id']}",
                    user_id=me.id,
                    model=model,
                    provider="mock",
                    prompt_tokens=10,
                    completion_tokens=5,
                    outcome="completed",
                    key_id=key["id"],
                    cost_micros=cost,
                    created_at=today - timedelta(days=days_ago),
                )
            )
    by_key = await api.get("/api/usage", params={"key_id": key["id"]}, headers=me.headers)
    assert by_key.status_code == 200, by_key.text
    report = by_key.json()
    assert (report["requests"], report["cost_micros"], report["prompt_tokens"]) == (3, 157, 30)
    assert [(i["model"], i["requests"], i["cost_micros"]) for i in report["items"]] == [
        ("mock-gpt-mini", 1, 7),
        ("mock-gpt", 2, 150),
    ]
    mine = (await api.get("/api/usage", headers=me.headers)).json()
    assert mine["cost_micros"] == 157
    # Not someone else's, unless an administrator asks.
    assert (
        await api.get("/api/usage", params={"key_id": key["id"]}, headers=other.headers)
    ).status_code == 404
    assert (
        await api.get("/api/usage", params={"user": me.id}, headers=other.headers)
    ).status_code == 404
    as_admin = await api.get("/api/usage", params={"user": me.id}, headers=admin.headers)
    assert as_admin.json()["cost_micros"] == 157
    bad = await api.get(
        "/api/usage", params={"from": "2026-01-02", "to": "2026-01-01"}, headers=me.headers
    )
    assert bad.status_code == 422
    both = await api.get("/api/usage", params={"key_id": 1, "team_id": 1}, headers=me.headers)
    assert both.status_code == 422


async def test_a_resync_repairs_a_redis_that_lost_the_keys(
    api: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    me = await new_account(api, "resync")
    secret = (await api.post("/api/keys", json={"name": "k"}, headers=me.headers)).json()["secret"]
    await redis.delete(directory_key(secret_digest(secret)))
    # KEY_RESYNC_SECONDS is one second in the tests.
    for _ in range(100):
        if await _record(redis, secret) is not None:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the key was never copied back")
