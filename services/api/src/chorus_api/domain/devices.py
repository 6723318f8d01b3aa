"""Device cookies: a browser (or app) that logged into an account before can prove it.

OWASP's "device cookies" against brute force: after a successful login the client gets a
cookie bound to that account, signed by the api. A later login that presents it is a
*known device* of the account, and the login limits treat it apart from everyone else
(:mod:`chorus_api.domain.login_limits`): guessing from other addresses or a busy shared
address does not refuse the owner, and the cookie has a small failure budget of its own,
so a stolen cookie buys almost nothing.

The value is ``<nonce>.<issued>.<signature>``: a random nonce (the device's name in the
limiter), the Unix time it was issued, and an HMAC-SHA256 over both and the account (a
hash of its e-mail), keyed from ``JWT_SECRET``. It expires after
``LOGIN_DEVICE_COOKIE_DAYS``; a cookie of another account, altered, expired or malformed
is simply not a known device. It holds nothing secret and grants nothing but a separate
failure count, so it is ``HttpOnly``, ``SameSite=Strict``, scoped to ``/api``, and
``Secure`` whenever the request came over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Final

__all__ = ["COOKIE_NAME", "COOKIE_PATH", "DeviceCookies", "account_digest"]

COOKIE_NAME: Final = "chorus_device"
#: Sent with the login and with the profile routes that check the password.
COOKIE_PATH: Final = "/api"
_MAX_LENGTH: Final = 128
_SIGNATURE_BYTES: Final = 18


def account_digest(email: str) -> str:
    """The account's name in limiter keys and cookies: a hash of its normalised e-mail."""
    return hashlib.sha256(email.casefold().encode()).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DeviceCookies:
    """Issues and checks device cookies with one key (derived from the JWT secret)."""

    def __init__(
        self, secret: str, *, max_age_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        # A key of its own: a device cookie signature can never be mistaken for a JWT's.
        self._key = hmac.new(secret.encode(), b"chorus device cookie v1", hashlib.sha256).digest()
        self.max_age_seconds = max_age_seconds
        self._clock = clock

    def _sign(self, email: str, nonce: str, issued: int) -> str:
        message = f"{account_digest(email)}|{nonce}|{issued}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest()[:_SIGNATURE_BYTES])

    def issue(self, email: str) -> str:
        """A new cookie value for a client that just logged into ``email``."""
        nonce = secrets.token_urlsafe(12)
        issued = int(self._clock())
        return f"{nonce}.{issued}.{self._sign(email, nonce, issued)}"

    def device(self, cookie: str | None, email: str) -> str | None:
        """The device's nonce if ``cookie`` is a valid, unexpired cookie of ``email``."""
        if not cookie or len(cookie) > _MAX_LENGTH:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        nonce, issued_text, signature = parts
        issued = int(issued_text)
        if not hmac.compare_digest(signature, self._sign(email, nonce, issued)):
            return None
        if not 0 <= self._clock() - issued <= self.max_age_seconds:
            return None
        return nonce
