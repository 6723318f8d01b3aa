"""JWT access tokens: what the api issues, realtime and the gateway accept."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from redis.asyncio import Redis

from chorus_common.redis_client import create_redis
from chorus_common.tokens import (
    ACCOUNT_DELETED,
    LEEWAY_SECONDS,
    InvalidTokenError,
    RevokedTokenError,
    TokenService,
    TokenVerifier,
    TokenVersions,
    VerifiedTokens,
    bearer_token,
    token_version_key,
)
from chorus_devstack.servers import RunningRedis


@pytest.fixture
def tokens(secret: str) -> TokenService:
    return TokenService(secret=secret, issuer="chorus")


def test_round_trip(tokens: TokenService) -> None:
    claims = tokens.verify(tokens.issue(42))
    assert claims.subject == "42"
    assert claims.expires_at > datetime.now(UTC)
    assert claims.token_id


def test_expired_token_is_rejected(tokens: TokenService) -> None:
    token = tokens.issue(1, ttl=timedelta(seconds=-60))
    with pytest.raises(InvalidTokenError, match="expired"):
        tokens.verify(token)


def test_forged_signature_is_rejected(tokens: TokenService) -> None:
    forged = TokenService(secret="x" * 48, issuer="chorus").issue(1)
    with pytest.raises(InvalidTokenError):
        tokens.verify(forged)


def test_other_issuer_is_rejected(tokens: TokenService, secret: str) -> None:
    other = TokenService(secret=secret, issuer="someone-else").issue(1)
    with pytest.raises(InvalidTokenError):
        tokens.verify(other)


def test_alg_none_is_rejected(tokens: TokenService) -> None:
    now = datetime.now(UTC)
    unsigned = jwt.encode(
        {"sub": "1", "iss": "chorus", "iat": now, "exp": now + timedelta(hours=1)},
        key=None,
        algorithm="none",
    )
    with pytest.raises(InvalidTokenError):
        tokens.verify(unsigned)


def test_missing_subject_is_rejected(tokens: TokenService, secret: str) -> None:
    now = datetime.now(UTC)
    token = jwt.encode(
        {"iss": "chorus", "iat": now, "exp": now + timedelta(hours=1)}, secret, "HS256"
    )
    with pytest.raises(InvalidTokenError):
        tokens.verify(token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x"])
def test_garbage_is_rejected(tokens: TokenService, garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        tokens.verify(garbage)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer ", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_verified_tokens_answer_like_the_service(tokens: TokenService) -> None:
    verified = VerifiedTokens(tokens)
    token = tokens.issue(42)
    first = verified.verify(token)
    assert first == tokens.verify(token)
    assert verified.verify(token) is first  # remembered, not decoded again
    assert len(verified) == 1


def test_verified_tokens_never_remember_invalid_ones(tokens: TokenService) -> None:
    verified = VerifiedTokens(tokens)
    forged = TokenService(secret="x" * 48, issuer="chorus").issue(1)
    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            verified.verify(forged)
    with pytest.raises(InvalidTokenError, match="expired"):
        verified.verify(tokens.issue(1, ttl=timedelta(seconds=-60)))
    assert len(verified) == 0


def test_a_remembered_token_is_checked_for_expiry(tokens: TokenService) -> None:
    now = [time.time()]
    verified = VerifiedTokens(tokens, clock=lambda: now[0])
    token = tokens.issue(7, ttl=timedelta(seconds=30))
    first = verified.verify(token)
    expires_at = first.expires_at.timestamp()
    now[0] = expires_at + LEEWAY_SECONDS - 0.5  # within PyJWT's leeway: still valid
    assert verified.verify(token) is first
    now[0] = expires_at + LEEWAY_SECONDS  # expired by the cache's clock: forgotten, and
    again = verified.verify(token)  # PyJWT decides again (its clock says 30 s to go)
    assert again is not first
    assert again == first


def test_verified_tokens_forget_the_oldest_when_full(tokens: TokenService) -> None:
    verified = VerifiedTokens(tokens, max_entries=2)
    first, second, third = (tokens.issue(n) for n in (1, 2, 3))
    claims = [verified.verify(token) for token in (first, second, third)]
    assert len(verified) == 2
    assert verified.verify(third) is claims[2]
    assert verified.verify(first) is not claims[0]  # forgotten: decoded again


def test_tokens_carry_the_account_version(tokens: TokenService, secret: str) -> None:
    assert tokens.verify(tokens.issue(5)).version == 1
    assert tokens.verify(tokens.issue(5, version=3)).version == 3
    now = datetime.now(UTC)
    claims = {"sub": "5", "iss": "chorus", "iat": now, "exp": now + timedelta(hours=1)}
    # Issued before versions existed: the first version, revoked by the first change.
    assert tokens.verify(jwt.encode(claims, secret, "HS256")).version == 1
    for bad in (0, -1, "2", True, 1.5):
        with pytest.raises(InvalidTokenError, match="version"):
            tokens.verify(jwt.encode({**claims, "ver": bad}, secret, "HS256"))


@pytest.fixture
async def redis(redis_server: RunningRedis) -> AsyncIterator[Redis]:
    client = create_redis(redis_server.url, client_name="tokens-tests")
    yield client
    await client.aclose()


async def test_token_versions_read_redis_and_remember_briefly(redis: Redis) -> None:
    now = [1000.0]
    versions = TokenVersions(redis, cache_seconds=5, clock=lambda: now[0])
    subject = f"u{os.urandom(4).hex()}"
    assert await versions.minimum(subject) == 0  # no key: nothing revoked
    await redis.set(token_version_key(subject), 3)
    now[0] += 4.9
    assert await versions.minimum(subject) == 0  # remembered: at most 5 s stale
    now[0] += 0.2
    assert await versions.minimum(subject) == 3
    others = [f"{subject}-{n}" for n in range(1200)]  # more than one MGET's worth
    await redis.set(token_version_key(others[-1]), ACCOUNT_DELETED)
    await redis.set(token_version_key(others[0]), "garbage")
    found = await versions.minimums([subject, *others])
    assert found[subject] == 3
    assert found[others[-1]] == ACCOUNT_DELETED
    assert found[others[0]] == ACCOUNT_DELETED  # unreadable: refuse rather than accept
    assert found[others[1]] == 0
    versions.remember(subject, 4)  # what the api knows right after writing it
    assert await versions.minimum(subject) == 4


async def test_token_versions_forget_the_oldest_when_full(redis: Redis) -> None:
    versions = TokenVersions(redis, cache_seconds=60, max_entries=2)
    for subject in ("a", "b", "c"):
        versions.remember(subject, 7)
    await redis.delete(token_version_key("a"))
    assert await versions.minimum("a") == 0  # forgotten: read again
    assert await versions.minimum("c") == 7


async def test_the_verifier_refuses_revoked_tokens(tokens: TokenService, redis: Redis) -> None:
    verifier = TokenVerifier(tokens, TokenVersions(redis, cache_seconds=0))
    subject = str(int.from_bytes(os.urandom(4), "big"))
    old, new = tokens.issue(subject), tokens.issue(subject, version=2)
    assert (await verifier.verify(old)).subject == subject
    await redis.set(token_version_key(subject), 2)
    with pytest.raises(RevokedTokenError):
        await verifier.verify(old)
    assert (await verifier.verify(new)).version == 2
    await redis.set(token_version_key(subject), ACCOUNT_DELETED)
    with pytest.raises(RevokedTokenError):
        await verifier.verify(new)
    with pytest.raises(InvalidTokenError):
        await verifier.verify("not.a.token")
