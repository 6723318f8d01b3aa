"""JWT access tokens: issued by the api, verified — the same way — by all three services.

HS256 with the shared ``JWT_SECRET``; ``sub`` is the user id, ``iss`` the issuer, ``exp``
mandatory, ``ver`` the account's token version, ``name`` the account's display name when
the token was issued (its public profile's name: realtime shows it on what the user
says). Verification pins the algorithm list, so a token cannot pick its own (``alg:
none`` and RSA/HMAC confusion are rejected), and requires every claim we rely on.

A client sends the same token on every request for its lifetime, and checking it (base64,
JSON, HMAC, claims) costs more CPU than the rest of a simple authenticated read.
:class:`VerifiedTokens` remembers the tokens that passed, until they expire.

**Revocation.** Tokens are signed, not stored, so ending them early needs one shared fact
per account: the lowest token version still valid. The api raises it when the password
changes (every token issued before carries a lower ``ver``) and sets it to
:data:`ACCOUNT_DELETED` when the account is deleted; it keeps the value in Postgres (the
source of truth) and writes it to Redis under ``chorus:token-version:<user id>``, where
:class:`TokenVersions` reads it. Each process remembers what it read for
``TOKEN_VERSION_CACHE_SECONDS``, so a revocation reaches every replica of every service
within that time. A key lives :data:`REVOCATION_TTL_SECONDS` — longer than any token — so
Redis holds one small key per recently revoked account, never one per token.
:class:`TokenVerifier` is the one call every service makes: signature and claims (with the
memory), then the version.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import jwt
from redis.asyncio import Redis

__all__ = [
    "ACCOUNT_DELETED",
    "MAX_TOKEN_TTL_SECONDS",
    "REVOCATION_TTL_SECONDS",
    "AccessClaims",
    "InvalidTokenError",
    "RevokedTokenError",
    "TokenService",
    "TokenVerifier",
    "TokenVersions",
    "VerifiedTokens",
    "bearer_token",
    "token_version_key",
]

ALGORITHM = "HS256"
#: Clock skew tolerated between the pod that issued a token and the one verifying it.
LEEWAY_SECONDS = 10
#: The longest lifetime the api may give a token (``ACCESS_TOKEN_TTL_SECONDS`` ≤ this).
MAX_TOKEN_TTL_SECONDS: Final = 86_400
#: How long a revocation is kept: by then every token it refuses has expired anyway.
REVOCATION_TTL_SECONDS: Final = MAX_TOKEN_TTL_SECONDS + 60
#: The minimum version of a deleted account: no token carries it, so none is accepted.
ACCOUNT_DELETED: Final = 2**31 - 1
_VERSION_PREFIX: Final = "chorus:token-version:"
#: Keys per MGET when a replica re-checks the tokens of its open connections.
_MGET_CHUNK: Final = 500


class InvalidTokenError(Exception):
    """The token is missing, malformed, forged, expired or from another issuer."""


class RevokedTokenError(InvalidTokenError):
    """The token was valid, but its account changed its password or was deleted since."""


def token_version_key(subject: str) -> str:
    """The Redis key holding the lowest valid token version of user ``subject``."""
    return f"{_VERSION_PREFIX}{subject}"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says."""

    subject: str
    expires_at: datetime
    issued_at: datetime
    token_id: str
    #: The account's token version when the token was issued (1 for tokens without ``ver``).
    version: int = 1
    #: The account's display name when the token was issued (None in tokens without one).
    name: str | None = None


class TokenService:
    """Issues and verifies access tokens with one secret and issuer."""

    def __init__(self, *, secret: str, issuer: str, ttl: timedelta = timedelta(hours=1)):
        self._secret = secret
        self.issuer = issuer
        self.ttl = ttl

    def issue(
        self,
        subject: str | int,
        *,
        version: int = 1,
        ttl: timedelta | None = None,
        name: str | None = None,
    ) -> str:
        """A signed access token for ``subject`` (the user id) at token ``version``."""
        now = datetime.now(UTC)
        claims = {
            "sub": str(subject),
            "iss": self.issuer,
            "iat": now,
            "exp": now + (ttl or self.ttl),
            "jti": os.urandom(12).hex(),
            "typ": "access",
            "ver": version,
        }
        if name is not None:
            claims["name"] = name
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; :class:`InvalidTokenError` for anything else."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(str(exc)) from exc
        if claims.get("typ", "access") != "access" or not claims["sub"]:
            msg = "not an access token"
            raise InvalidTokenError(msg)
        version = claims.get("ver", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            msg = "malformed token version"
            raise InvalidTokenError(msg)
        return AccessClaims(
            subject=str(claims["sub"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            token_id=str(claims.get("jti", "")),
            version=version,
            name=name if isinstance(name := claims.get("name"), str) and name else None,
        )


class VerifiedTokens:
    """:meth:`TokenService.verify` with a memory of the tokens that passed it.

    Keyed by the whole token (signature included), so only the exact bytes that were
    verified ever hit; a hit is re-checked for expiry exactly as PyJWT checks ``exp``
    (with the same leeway), and the other time claims (``iat``, ``nbf``) can only have
    become more valid since. Invalid tokens are never remembered, so garbage cannot fill
    the memory; at ``max_entries`` the oldest entry is forgotten. One instance per
    :class:`TokenService` (a new secret means a new service, hence an empty memory).
    """

    def __init__(
        self,
        tokens: TokenService,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = tokens
        self.max_entries = max_entries
        self._clock = clock
        self._verified: dict[str, tuple[float, AccessClaims]] = {}

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; :class:`InvalidTokenError` for anything else."""
        entry = self._verified.get(token)
        if entry is not None:
            if entry[0] > self._clock() - LEEWAY_SECONDS:
                return entry[1]
            del self._verified[token]
        claims = self.tokens.verify(token)
        if len(self._verified) >= self.max_entries:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (claims.expires_at.timestamp(), claims)
        return claims

    def __len__(self) -> int:
        return len(self._verified)


class TokenVersions:
    """The lowest valid token version of each account, read from Redis, remembered briefly.

    ``cache_seconds`` is how stale a process may be: a revoked token keeps working here for
    at most that long. Unknown accounts (no key) have minimum 0: nothing of theirs is
    revoked. At ``max_entries`` the oldest entry is forgotten. Redis errors propagate: a
    service that cannot tell whether a token was revoked refuses to guess.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        cache_seconds: float,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._known: dict[str, tuple[float, int]] = {}

    def _fresh(self, subject: str, now: float) -> int | None:
        entry = self._known.get(subject)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def remember(self, subject: str, minimum: int) -> None:
        """Note ``minimum`` for ``subject`` (read from Redis, or just written by the api)."""
        known = self._known
        if subject not in known and len(known) >= self.max_entries:
            del known[next(iter(known))]
        known[subject] = (self._clock() + self.cache_seconds, minimum)

    async def minimum(self, subject: str) -> int:
        """The lowest valid token version of ``subject``."""
        cached = self._fresh(subject, self._clock())
        if cached is not None:
            return cached
        minimum = _parse_version(await self.redis.get(token_version_key(subject)))
        self.remember(subject, minimum)
        return minimum

    async def minimums(self, subjects: Iterable[str]) -> dict[str, int]:
        r""":meth:`minimum` of many accounts, the stale ones read in a few ``MGET``\ s."""
        now = self._clock()
        found: dict[str, int] = {}
        stale: list[str] = []
        for subject in set(subjects):
            cached = self._fresh(subject, now)
            if cached is None:
                stale.append(subject)
            else:
                found[subject] = cached
        for start in range(0, len(stale), _MGET_CHUNK):
            chunk = stale[start : start + _MGET_CHUNK]
            values = await self.redis.mget([token_version_key(s) for s in chunk])
            for subject, raw in zip(chunk, values, strict=True):
                found[subject] = _parse_version(raw)
                self.remember(subject, found[subject])
        return found

    async def check(self, claims: AccessClaims) -> None:
        """Raise :class:`RevokedTokenError` if the account revoked this token's version."""
        if claims.version < await self.minimum(claims.subject):
            msg = "token revoked (password changed or account deleted)"
            raise RevokedTokenError(msg)


def _parse_version(raw: bytes | str | None) -> int:
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        return ACCOUNT_DELETED  # unreadable: refuse rather than accept


class TokenVerifier:
    """What every service calls with a bearer token: signature, claims, then revocation."""

    def __init__(self, tokens: TokenService, versions: TokenVersions) -> None:
        self.tokens = tokens
        self.verified = VerifiedTokens(tokens)
        self.versions = versions

    async def verify(self, token: str) -> AccessClaims:
        """The claims of a valid, unrevoked token; :class:`InvalidTokenError` otherwise.

        :class:`RevokedTokenError` (a subclass) when only the revocation refused it; a
        Redis error when the revocation could not be checked.
        """
        claims = self.verified.verify(token)
        await self.versions.check(claims)
        return claims


def bearer_token(authorization: str | None) -> str | None:
    """``"Bearer abc"`` → ``"abc"``; None when the header is absent or another scheme."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()
