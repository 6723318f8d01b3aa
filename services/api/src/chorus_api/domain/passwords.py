"""The password policy and argon2 hashing off the event loop.

Policy (a weak password is a 422 ``weak_password``):

- at least 10 characters (and at most 128, enforced by the request schema);
- at least two character classes out of lower-case letters, upper-case letters, digits
  and everything else (symbols, spaces, letters without case) — so not all one class;
- not the account's e-mail address, nor the part of it before the ``@``.

Hashing is argon2id with pwdlib's recommended parameters (64 MiB, 3 passes, ~0.1 s of a
core). It runs in worker threads — argon2-cffi releases the GIL — behind a capacity
limiter, so a burst of logins costs bounded memory and never stalls the event loop.
"""

from __future__ import annotations

import secrets

import anyio
from pwdlib import PasswordHash

from chorus_api.domain.errors import WeakPasswordError

__all__ = ["MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "PasswordHasher", "check_password_policy"]

MIN_PASSWORD_LENGTH = 10
#: Long enough for any passphrase, short enough that hashing cost stays bounded.
MAX_PASSWORD_LENGTH = 128
MIN_CHARACTER_CLASSES = 2


def _character_classes(password: str) -> int:
    classes = set()
    for char in password:
        if char.isdigit():
            classes.add("digit")
        elif char.islower():
            classes.add("lower")
        elif char.isupper():
            classes.add("upper")
        else:
            classes.add("other")
    return len(classes)


def check_password_policy(*, password: str, email: str) -> None:
    """Raise :class:`WeakPasswordError` listing every rule ``password`` breaks."""
    reasons = []
    if len(password) < MIN_PASSWORD_LENGTH:
        reasons.append(f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        reasons.append(f"must be at most {MAX_PASSWORD_LENGTH} characters long")
    if _character_classes(password) < MIN_CHARACTER_CLASSES:
        reasons.append(
            "must mix at least two of: lower-case letters, upper-case letters, digits, symbols"
        )
    folded = password.casefold()
    address = email.casefold()
    if folded in (address, address.partition("@")[0]):
        reasons.append("must not be the e-mail address")
    if reasons:
        raise WeakPasswordError(reasons)


class PasswordHasher:
    """argon2id hashing and verification in threads, at most ``concurrency`` at a time."""

    def __init__(self, *, concurrency: int) -> None:
        self._hash = PasswordHash.recommended()
        self._limiter = anyio.CapacityLimiter(concurrency)
        # A real hash of a random password: verifying against it costs what a real check
        # costs, which is what unknown e-mails must cost too (see verify_unknown_user).
        self._dummy_hash = self._hash.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password``."""
        return await anyio.to_thread.run_sync(self._hash.hash, password, limiter=self._limiter)

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """Whether ``password`` matches, and a new hash if the parameters have changed."""
        return await anyio.to_thread.run_sync(
            self._hash.verify_and_update, password, password_hash, limiter=self._limiter
        )

    async def verify_unknown_user(self, password: str) -> None:
        """Spend the time a real verification takes, for an e-mail with no account.

        The timing-attack guard: answering "no such user" faster than "wrong password"
        would let anyone enumerate registered e-mail addresses by timing the token endpoint.
        """
        await anyio.to_thread.run_sync(
            self._hash.verify, password, self._dummy_hash, limiter=self._limiter
        )
