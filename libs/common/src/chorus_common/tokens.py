"""JWT access tokens: issued by the api, verified by realtime and the gateway.

HS256 with the shared ``JWT_SECRET``; ``sub`` is the user id, ``iss`` the issuer, ``exp``
mandatory. Verification pins the algorithm list, so a token cannot pick its own
(``alg: none`` and RSA/HMAC confusion are rejected), and requires every claim we rely on.

A client sends the same token on every request for its lifetime, and checking it (base64,
JSON, HMAC, claims) costs more CPU than the rest of a simple authenticated read.
:class:`VerifiedTokens` remembers the tokens that passed, until they expire.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

__all__ = [
    "AccessClaims",
    "InvalidTokenError",
    "TokenService",
    "VerifiedTokens",
    "bearer_token",
]

ALGORITHM = "HS256"
#: Clock skew tolerated between the pod that issued a token and the one verifying it.
LEEWAY_SECONDS = 10


class InvalidTokenError(Exception):
    """The token is missing, malformed, forged, expired or from another issuer."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says."""

    subject: str
    expires_at: datetime
    issued_at: datetime
    token_id: str


class TokenService:
    """Issues and verifies access tokens with one secret and issuer."""

    def __init__(self, *, secret: str, issuer: str, ttl: timedelta = timedelta(hours=1)):
        self._secret = secret
        self.issuer = issuer
        self.ttl = ttl

    def issue(self, subject: str | int, *, ttl: timedelta | None = None) -> str:
        """A signed access token for ``subject`` (the user id)."""
        now = datetime.now(UTC)
        claims = {
            "sub": str(subject),
            "iss": self.issuer,
            "iat": now,
            "exp": now + (ttl or self.ttl),
            "jti": os.urandom(12).hex(),
            "typ": "access",
        }
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
        return AccessClaims(
            subject=str(claims["sub"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            token_id=str(claims.get("jti", "")),
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


def bearer_token(authorization: str | None) -> str | None:
    """``"Bearer abc"`` → ``"abc"``; None when the header is absent or another scheme."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()
