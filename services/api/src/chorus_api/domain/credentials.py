"""Checking a password under the login limits: logins, and profile changes that need one.

Every password check — ``POST /api/auth/token``, ``PATCH /api/users/me`` with
``current_password``, ``DELETE /api/users/me`` — goes through :meth:`Credentials.check`,
so each is throttled the same way (:mod:`chorus_api.domain.login_limits`): the attempt
is reserved before anything else happens, the account is read only once it is admitted,
and argon2 runs with no database connection held. Unknown e-mails cost a dummy argon2
verification and count like wrong passwords.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chorus_api.domain.devices import DeviceCookies, account_digest
from chorus_api.domain.errors import InvalidCredentialsError, RateLimitedError
from chorus_api.domain.login_limits import LoginLimiter
from chorus_api.domain.passwords import PasswordHasher
from chorus_api.metrics import LOGIN_FAILURES

__all__ = ["Client", "Credentials", "StoredAccount"]

logger = logging.getLogger("chorus.api.credentials")

_REFUSAL_REASONS = {"delay": "delayed", "account": "locked_account", "address": "locked_address"}


@dataclass(frozen=True, slots=True)
class Client:
    """Where a password attempt comes from."""

    #: The client address (uvicorn's, from X-Forwarded-For of trusted proxies only).
    address: str
    #: The device cookie the client sent, if any.
    device_cookie: str | None = None


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """What a password check needs of an account."""

    id: int
    email: str
    password_hash: str
    token_version: int
    #: The display name (tokens carry it).
    full_name: str = ""


class Credentials:
    """Password checks under the limits, and the device cookies that prove known clients."""

    def __init__(
        self, *, hasher: PasswordHasher, limiter: LoginLimiter, devices: DeviceCookies
    ) -> None:
        self.hasher = hasher
        self.limiter = limiter
        self.devices = devices

    async def check(
        self,
        *,
        email: str,
        password: str,
        client: Client,
        load: Callable[[], Awaitable[StoredAccount | None]],
    ) -> tuple[StoredAccount, str | None]:
        """The account ``load`` finds if ``password`` is its password, and a new hash if due.

        :class:`RateLimitedError` when the limits refuse the attempt (nothing is read or
        verified then), :class:`InvalidCredentialsError` for an unknown account or a wrong
        password (counted as a failure).
        """
        device = self.devices.device(client.device_cookie, email)
        try:
            reservation = await self.limiter.reserve(
                email=email, address=client.address, device=device
            )
        except RateLimitedError as exc:
            reason = _REFUSAL_REASONS.get(exc.scope, "locked_account")
            LOGIN_FAILURES.labels(reason).inc()
            # The account as its limiter key names it (a hash), never the e-mail itself.
            logger.info(
                "password attempt refused",
                extra={
                    "reason": reason,
                    "client": client.address,
                    "account": account_digest(email)[:12],
                    "retry_after": exc.retry_after,
                },
            )
            raise
        try:
            await self.limiter.wait_turn(reservation)
            account = await load()
            if account is None:
                await self.hasher.verify_unknown_user(password)
                LOGIN_FAILURES.labels("unknown_email").inc()
                raise InvalidCredentialsError
            valid, new_hash = await self.hasher.verify(password, account.password_hash)
            if not valid:
                LOGIN_FAILURES.labels("wrong_password").inc()
                raise InvalidCredentialsError
        except InvalidCredentialsError:
            await self.limiter.failed(reservation)
            raise
        except BaseException:
            # An outage or a cancelled request judged no password: not a failure.
            await self.limiter.release(reservation)
            raise
        await self.limiter.succeeded(reservation)
        return account, new_hash
