"""The HTTP answers that several routes give for the same domain errors."""

from __future__ import annotations

from fastapi import HTTPException

from chorus_api.domain.errors import RateLimitedError, WeakPasswordError

__all__ = ["too_many_attempts", "too_many_signups", "weak_password"]

_ATTEMPT_MESSAGES = {
    "delay": "Too many failed logins for this account from this address",
    "account": (
        "Too many failed logins for this account from unknown devices "
        "(a device you logged in with before still can)"
    ),
    "address": "Too many failed logins from this address",
}
_SIGNUP_MESSAGES = {
    "address": "Too many sign-ups from this address",
    "global": "Too many sign-ups right now",
}


def _rate_limited(code: str, text: str, exc: RateLimitedError) -> HTTPException:
    return HTTPException(
        429,
        {"code": code, "message": f"{text}; retry in {exc.retry_after} seconds."},
        headers={"Retry-After": str(exc.retry_after)},
    )


def too_many_attempts(exc: RateLimitedError) -> HTTPException:
    """429 ``too_many_attempts`` with ``Retry-After``: a password attempt the limits refused."""
    text = _ATTEMPT_MESSAGES.get(exc.scope, "Too many failed logins")
    return _rate_limited("too_many_attempts", text, exc)


def too_many_signups(exc: RateLimitedError) -> HTTPException:
    """429 ``too_many_signups`` with ``Retry-After``: a registration the limits refused."""
    text = _SIGNUP_MESSAGES.get(exc.scope, "Too many sign-ups")
    return _rate_limited("too_many_signups", text, exc)


def weak_password(exc: WeakPasswordError) -> HTTPException:
    """422 ``weak_password`` listing every broken rule."""
    return HTTPException(
        422,
        {"code": "weak_password", "message": "The password is too weak.", "details": exc.reasons},
    )
