"""Settings of the api service (environment variables; see DESIGN.md for shared names).

Beyond the common and Postgres settings, the api reads its own knobs: token lifetime, the
login limits, the request body cap and how many password hashes may run at once. Every
default works on a plain cluster; the README lists them all.
"""

from __future__ import annotations

from pydantic import Field

from chorus_common.settings import DatabaseSettings

__all__ = ["ApiSettings"]


class ApiSettings(DatabaseSettings):
    """The api's settings: the common ones, Postgres, and the api's own limits."""

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
        default=3600, ge=60, le=86_400, description="lifetime of issued access tokens"
    )
    login_window_seconds: int = Field(
        default=900, ge=1, description="window over which failed logins are counted"
    )
    login_max_failures_per_account: int = Field(
        default=5, ge=1, description="failed logins for one e-mail in a window before 429"
    )
    login_max_failures_per_address: int = Field(
        default=20, ge=1, description="failed logins from one client address in a window before 429"
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="largest request body accepted (413 beyond)"
    )
    password_hash_concurrency: int = Field(
        default=4,
        ge=1,
        description="argon2 hashes computed at once (each takes ~64 MiB and a core for ~0.1 s)",
    )
