"""The HTTP answers that several routes give for the same domain errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fastapi import HTTPException

from chorus_api.domain.errors import (
    ConflictError,
    ForbiddenError,
    InvalidCursorError,
    LimitReachedError,
    NotFoundError,
    RateLimitedError,
    UserGoneError,
    WeakPasswordError,
)

__all__ = [
    "account_gone",
    "room_errors",
    "too_many_attempts",
    "too_many_signups",
    "weak_password",
]

_ATTEMPT_MESSAGES = {
    "delay": "Too many failed logins for this account from this address",
    "account": (
        "Too many failed logins for this account from unknown devices "
        "(a device you logged in with before still can)"
    ),
    "address": "Too many failed logins from this address",
}
_ROOM_RATES = {
    "invitations": ("too_many_invitations", "You sent too many invitations this hour"),
    "dms": ("too_many_conversations", "You started too many conversations this hour"),
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


def account_gone() -> HTTPException:
    """401 ``invalid_token``: the token is valid, but its account was deleted since."""
    return HTTPException(
        401,
        {"code": "invalid_token", "message": "The token's account no longer exists."},
        headers={"WWW-Authenticate": "Bearer"},
    )


def weak_password(exc: WeakPasswordError) -> HTTPException:
    """422 ``weak_password`` listing every broken rule."""
    return HTTPException(
        422,
        {"code": "weak_password", "message": "The password is too weak.", "details": exc.reasons},
    )


@contextlib.contextmanager
def room_errors() -> Iterator[None]:
    """The HTTP answers of the room routes' domain errors (404, 403, 409, 422, 429, 401)."""
    try:
        yield
    except NotFoundError as exc:
        raise HTTPException(404, {"code": "not_found", "message": str(exc)}) from None
    except ForbiddenError as exc:
        raise HTTPException(403, {"code": exc.code, "message": exc.message}) from None
    except LimitReachedError as exc:
        details = [{"limit": exc.limit, "maximum": exc.maximum}] if exc.limit else []
        raise HTTPException(
            409, {"code": "limit_reached", "message": exc.message, "details": details}
        ) from None
    except ConflictError as exc:
        status = 422 if exc.code == "reserved_name" else 409
        raise HTTPException(status, {"code": exc.code, "message": exc.message}) from None
    except RateLimitedError as exc:
        code, text = _ROOM_RATES.get(exc.scope, ("too_many_requests", "Too many requests"))
        raise _rate_limited(code, text, exc) from None
    except InvalidCursorError as exc:
        raise HTTPException(422, {"code": "invalid_cursor", "message": str(exc)}) from None
    except UserGoneError:
        raise account_gone() from None
