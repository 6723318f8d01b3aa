"""Failed-login limits in Redis, per account and per client address.

Each failed login increments two fixed-window counters: one keyed by the e-mail (a hash of
it, so keys do not hold addresses) and one by the client address (the one uvicorn derived
from ``X-Forwarded-For`` of trusted proxies). Once either reaches its limit, logins for that
account or from that address answer 429 — before the password is even checked, so a
locked account cannot be guessed at — until the window ends, which ``Retry-After`` says.
A successful login clears the account's counter, not the address's: one right password
must not buy an address another round of guesses at other accounts.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from chorus_api.domain.errors import RateLimitedError

__all__ = ["LoginLimiter"]

PREFIX = "chorus:login-failures:"


def _account_key(email: str) -> str:
    digest = hashlib.sha256(email.casefold().encode()).hexdigest()[:32]
    return f"{PREFIX}account:{digest}"


def _address_key(address: str) -> str:
    return f"{PREFIX}address:{address[:64]}"


class LoginLimiter:
    """Counts failed logins in fixed windows and refuses logins past the limits."""

    def __init__(
        self, redis: Redis, *, window_seconds: int, max_per_account: int, max_per_address: int
    ) -> None:
        self.redis = redis
        self.window_seconds = window_seconds
        self.max_per_account = max_per_account
        self.max_per_address = max_per_address

    async def check(self, *, email: str, address: str) -> None:
        """Raise :class:`RateLimitedError` if the account or the address is locked out."""
        account, client = _account_key(email), _address_key(address)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(account)
            pipe.ttl(account)
            pipe.get(client)
            pipe.ttl(client)
            account_count, account_ttl, address_count, address_ttl = await pipe.execute()
        if address_count is not None and int(address_count) >= self.max_per_address:
            raise RateLimitedError("address", max(int(address_ttl), 1))
        if account_count is not None and int(account_count) >= self.max_per_account:
            raise RateLimitedError("account", max(int(account_ttl), 1))

    async def record_failure(self, *, email: str, address: str) -> None:
        """Count one failed login against the account and the address."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in (_account_key(email), _address_key(address)):
                # SET NX EX then INCR in one transaction: the window starts at the first
                # failure and the key can never be left without an expiry.
                pipe.set(key, 0, ex=self.window_seconds, nx=True)
                pipe.incr(key)
            await pipe.execute()

    async def reset_account(self, *, email: str) -> None:
        """Forget the account's failures after a successful login."""
        await self.redis.delete(_account_key(email))
