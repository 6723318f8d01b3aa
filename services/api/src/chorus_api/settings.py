"""Settings of the api service (environment variables; the README lists them all, and
``docs/design.md`` the ones shared with other services).

Beyond the common and Postgres settings, the api reads its own knobs: token lifetime and
revocation resync, the login and sign-up limits, device cookies, the request body cap, how
many password hashes may run at once, and the rooms' limits and access-list resync. Every
default works on a plain cluster; ``docs/security.md`` says what each limit protects.
"""

from __future__ import annotations

from pydantic import Field

from chorus_common.settings import (
    BodyLimitSettings,
    EventHistorySettings,
    PostgresSettings,
    QueueSettings,
    RedisSettings,
)
from chorus_common.tokens import MAX_TOKEN_TTL_SECONDS

__all__ = ["ApiSettings"]


class ApiSettings(
    QueueSettings, EventHistorySettings, BodyLimitSettings, RedisSettings, PostgresSettings
):
    """The api's settings: the shared ones (it enqueues jobs, publishes events, takes
    bodies, uses Redis and Postgres) and the api's own limits."""

    service_name: str = "api"
    #: Off by default: the api discards server-closed connections at checkout for free
    #: (chorus_api.transport.pool); true adds SQLAlchemy's ping, three round trips per checkout.
    db_pool_pre_ping: bool = False
    db_read_pool_size: int = Field(
        default=10,
        ge=1,
        le=1000,
        description=(
            "connections of the read pool (asyncpg's own) behind the hot session-less reads, "
            "on top of DB_POOL_SIZE + DB_MAX_OVERFLOW; opened on demand"
        ),
    )

    access_token_ttl_seconds: int = Field(
        default=3600, ge=60, le=MAX_TOKEN_TTL_SECONDS, description="lifetime of issued tokens"
    )
    token_resync_seconds: float = Field(
        default=60.0,
        gt=0,
        description="seconds between copies of recent token revocations from Postgres to Redis",
    )
    key_resync_seconds: float = Field(
        default=60.0,
        gt=0,
        description="seconds between copies of every live virtual key from Postgres to Redis",
    )
    admin_emails: str = Field(
        default="",
        description="comma-separated e-mail addresses of the accounts that administer every "
        "virtual key, team and budget",
    )
    keys_max_per_owner: int = Field(
        default=50, ge=1, le=10_000, description="live virtual keys a user or a team may hold"
    )
    teams_max_per_user: int = Field(
        default=20, ge=1, le=10_000, description="teams one user may belong to"
    )

    @property
    def admins(self) -> frozenset[str]:
        """``ADMIN_EMAILS``, lower-cased."""
        return frozenset(e.strip().lower() for e in self.admin_emails.split(",") if e.strip())

    login_window_seconds: int = Field(
        default=900, ge=1, description="window over which failed logins are counted"
    )
    login_free_failures: int = Field(
        default=3,
        ge=1,
        description="failures for one account from one address before progressive delays",
    )
    login_max_failures_per_account: int = Field(
        default=10,
        ge=1,
        description="failures of one account from unknown devices in a window before 429 for them",
    )
    login_max_failures_per_address: int = Field(
        default=20,
        ge=1,
        description="failures from one address in a window before the address is throttled",
    )
    login_max_failures_per_device: int = Field(
        default=5, ge=1, description="failures with one device cookie in a window before 429"
    )
    login_device_cookie_days: int = Field(
        default=180, ge=1, le=400, description="lifetime of the known-device cookie"
    )
    signup_window_seconds: int = Field(
        default=3600, ge=1, description="window of the per-address sign-up limit"
    )
    signup_max_per_address: int = Field(
        default=10, ge=1, description="sign-ups from one client address per window before 429"
    )
    signup_max_per_minute: int = Field(
        default=300, ge=1, description="sign-ups per minute across the deployment before 429"
    )
    room_acl_resync_seconds: float = Field(
        default=15.0,
        gt=0,
        description=(
            "seconds between copies of changed room access lists from Postgres to Redis "
            "(and the check that Redis holds them at all)"
        ),
    )
    rooms_max_owned: int = Field(
        default=50, ge=1, description="rooms one person may own at once (409 beyond)"
    )
    room_max_members: int = Field(
        default=1000, ge=2, le=10_000, description="members of one room (409 beyond)"
    )
    room_max_pending_invitations: int = Field(
        default=200, ge=1, description="pending invitations of one room (409 beyond)"
    )
    room_invitations_per_hour: int = Field(
        default=30, ge=1, description="invitations one person may send per hour (429 beyond)"
    )
    room_invitation_mails_per_address_per_day: int = Field(
        default=3,
        ge=1,
        description="invitation mails one address receives per day (beyond: invited, not mailed)",
    )
    dm_opens_per_hour: int = Field(
        default=30,
        ge=1,
        description="new direct-message conversations one person may start per hour (429 beyond)",
    )
    password_hash_concurrency: int = Field(
        default=4,
        ge=1,
        description="argon2 hashes computed at once (each takes ~64 MiB and a core for ~0.1 s)",
    )
