"""JWT access tokens: what the api issues, realtime and the gateway accept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from chorus_common.tokens import InvalidTokenError, TokenService, bearer_token


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
