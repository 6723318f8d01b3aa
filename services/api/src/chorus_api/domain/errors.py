"""What can go wrong in the api's domain, as exceptions the routes map to HTTP statuses."""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "DomainError",
    "DuplicateEmailError",
    "DuplicateNameError",
    "ForbiddenError",
    "ForbiddenTransitionError",
    "InvalidCredentialsError",
    "InvalidCursorError",
    "InvalidTransitionError",
    "LimitReachedError",
    "NotFoundError",
    "OrderNotEditableError",
    "RateLimitedError",
    "UserGoneError",
    "WeakPasswordError",
]


class DomainError(Exception):
    """Base of every expected failure of a domain function."""


class NotFoundError(DomainError):
    """The thing does not exist, or belongs to someone else (we do not say which)."""


class DuplicateEmailError(DomainError):
    """Another account already uses this e-mail address."""


class WeakPasswordError(DomainError):
    """The password breaks the policy; ``reasons`` says how."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class InvalidCredentialsError(DomainError):
    """Unknown e-mail or wrong password (deliberately indistinguishable)."""


class UserGoneError(DomainError):
    """The token's user was deleted while the token is still valid."""


class RateLimitedError(DomainError):
    """Too many attempts; retry after ``retry_after`` seconds.

    ``scope`` names the limit: ``delay``, ``account``, ``address`` (logins) or
    ``address``, ``global`` (sign-ups).
    """

    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(f"rate limited ({scope}); retry in {retry_after} s")
        self.scope = scope
        self.retry_after = retry_after


class InvalidTransitionError(DomainError):
    """An order status change the lifecycle does not allow."""

    def __init__(self, current: str, requested: str) -> None:
        super().__init__(f"an order cannot go from {current!r} to {requested!r}")
        self.current = current
        self.requested = requested


class ForbiddenTransitionError(InvalidTransitionError):
    """A status change the lifecycle allows, but only the shop may make (payment, shipping)."""


class OrderNotEditableError(DomainError):
    """Item, quantity and amount may only change while the order is pending."""


class InvalidCursorError(DomainError):
    """A pagination cursor we did not issue (or from another list)."""


class ForbiddenError(DomainError):
    """The actor may see the thing but not do this to it; the message says why.

    ``code`` is the error code the HTTP answer carries (``forbidden`` unless told).
    """

    def __init__(self, message: str, *, code: str = "forbidden") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ConflictError(DomainError):
    """The request conflicts with the current state (``code`` says how)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LimitReachedError(DomainError):
    """A per-user, per-team or per-room bound (keys, teams, rooms, members) is reached.

    ``limit`` and ``maximum`` name the bound, when the answer should carry them.
    """

    def __init__(self, message: str, *, limit: str | None = None, maximum: int = 0) -> None:
        super().__init__(message)
        self.limit = limit
        self.maximum = maximum
        self.message = message


class DuplicateNameError(DomainError):
    """Another team already has this name."""
