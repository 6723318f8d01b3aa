"""Virtual keys: what the api writes to Redis and the gateway reads (the shared contract).

The api owns virtual keys (Postgres is the source of truth, holding only each secret's
SHA-256). For the gateway to resolve a presented key without a database, the api copies
every live key to Redis as ``chorus:vkey:<sha256 hex>`` → a JSON :class:`KeyRecord`,
expiring with the key (or with a rotated-out secret's grace period), and publishes the
digest on :data:`INVALIDATION_CHANNEL` whenever a key changes or is revoked. Each gateway
replica keeps the records it read in a small cache, drops an entry when its digest is
published, and never trusts an entry longer than its cache TTL — the bound for a missed
message. The api re-copies every live key at startup and periodically, so a Redis that
lost its data is repaired.

A user's own spend budget (set by an administrator) applies to every call of that user:
through each of their virtual keys and through their access token. Their keys' records
carry it; for the token, the api copies it as ``chorus:vkey:user:<id>`` → a JSON
:class:`Budget` (absent: no budget) and publishes ``user:<id>`` on the same channel, so
the gateways cache and forget it exactly like a key. Its spend counter lives in the
user's slot, the one their keys' and token's counters share, so one admission script
reserves it with everything else.

Secrets look like ``sk-chorus-<43 url-safe characters>`` (256 random bits): never a JWT
(no dots), so the gateway can tell them from access tokens and service keys at a glance.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

__all__ = [
    "BUDGET_PERIODS",
    "INVALIDATION_CHANNEL",
    "SECRET_PREFIX",
    "Budget",
    "BudgetPeriod",
    "KeyRecord",
    "budget_period",
    "directory_key",
    "is_virtual_key",
    "new_secret",
    "secret_digest",
    "spend_counter",
    "user_budget_key",
    "user_budget_subject",
]

SECRET_PREFIX: Final = "sk-chorus-"  # noqa: S105 - a prefix, not a secret
INVALIDATION_CHANNEL: Final = "chorus:vkey:changed"
#: Published instead of a digest when every replica should forget every key (a resync).
INVALIDATE_ALL: Final = "*"

BudgetPeriod = Literal["day", "month", "total"]
BUDGET_PERIODS: Final = ("day", "month", "total")


def new_secret() -> str:
    """A fresh secret: shown once to its owner, never stored."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def is_virtual_key(credential: str) -> bool:
    """Whether ``credential`` is shaped like a virtual key."""
    return credential.startswith(SECRET_PREFIX)


def secret_digest(secret: str) -> str:
    """The SHA-256 of a secret, hex: what Postgres and Redis hold."""
    return hashlib.sha256(secret.encode()).hexdigest()


def directory_key(digest: str) -> str:
    """The Redis key of the record a secret with this digest resolves to."""
    return f"chorus:vkey:{digest}"


def user_budget_subject(user_id: int) -> str:
    """What the invalidation channel carries when a user's budget changes."""
    return f"user:{user_id}"


def user_budget_key(user_id: int) -> str:
    """The Redis key of a user's own budget (a JSON :class:`Budget`; absent: none)."""
    return directory_key(user_budget_subject(user_id))


@dataclass(frozen=True, slots=True)
class Budget:
    """A spend budget in micro-units of currency (1 USD = 1 000 000) per period.

    ``scope`` is who spends it — ``vkey:<id>``, ``team:<id>`` or ``user:<id>`` — so one
    team budget is shared by all the team's keys.
    """

    scope: str
    limit_micros: int
    period: BudgetPeriod

    def to_json(self) -> str:
        """The Redis value of a user's budget."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Budget:
        """Parse a Redis value (``ValueError`` / ``KeyError`` / ``TypeError`` if malformed)."""
        return _budget(json.loads(raw))


#: Spend counters outlive their period by this much, so a call begun in it still settles.
SPEND_GRACE_MS: Final = 86_400_000


def spend_counter(tag: str, budget: Budget, now: datetime) -> tuple[str, int, int]:
    """Where the gateway counts ``budget``'s spend in the period holding ``now`` (UTC).

    Returns the Redis key (in the slot of ``tag``, the key's owner), its expiry in ms (0:
    none) and the seconds until the period ends (0: never). Periods are calendar days and
    months in UTC; ``total`` never resets.
    """
    if budget.period == "total":
        return f"chorus:gw:spend:{{{tag}}}:{budget.scope}:total", 0, 0
    if budget.period == "day":
        bucket = now.strftime("d%Y%m%d")
        end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    else:
        bucket = now.strftime("m%Y%m")
        end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    left_ms = math.ceil((end - now).total_seconds() * 1000)
    key = f"chorus:gw:spend:{{{tag}}}:{budget.scope}:{bucket}"
    return key, left_ms + SPEND_GRACE_MS, math.ceil(left_ms / 1000)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a virtual key allows, as the gateway sees it.

    ``owner`` is ``user:<id>`` or ``team:<id>``; the gateway keeps every counter of a key
    (rate limits, budgets) in that owner's Redis slot, so one script can check them all.
    Limits left None take the gateway's defaults; ``models`` None allows every model.
    ``expires_at`` is a Unix time after which the key is refused.
    """

    id: int
    name: str
    owner: str
    user_id: int | None
    team_id: int | None
    models: tuple[str, ...] | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_streams: int | None = None
    expires_at: float | None = None
    budgets: tuple[Budget, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """The Redis value."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> KeyRecord:
        """Parse a Redis value (``ValueError`` / ``KeyError`` / ``TypeError`` if malformed)."""
        data: dict[str, Any] = json.loads(raw)
        models = data.get("models")
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            owner=str(data["owner"]),
            user_id=_optional_int(data.get("user_id")),
            team_id=_optional_int(data.get("team_id")),
            models=tuple(str(m) for m in models) if models is not None else None,
            requests_per_minute=_optional_int(data.get("requests_per_minute")),
            tokens_per_minute=_optional_int(data.get("tokens_per_minute")),
            concurrent_streams=_optional_int(data.get("concurrent_streams")),
            expires_at=float(data["expires_at"]) if data.get("expires_at") is not None else None,
            budgets=tuple(_budget(b) for b in data.get("budgets") or ()),
        )


def _budget(data: dict[str, Any]) -> Budget:
    return Budget(str(data["scope"]), int(data["limit_micros"]), budget_period(data["period"]))


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"not an integer: {value!r}"
        raise TypeError(msg)
    return value


def budget_period(value: object) -> BudgetPeriod:
    """``value`` as a budget period (``ValueError`` if it is not one)."""
    if value == "day":
        return "day"
    if value == "month":
        return "month"
    if value == "total":
        return "total"
    msg = f"unknown budget period {value!r}"
    raise ValueError(msg)
