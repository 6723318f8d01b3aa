"""The settings base every service subclasses.

One environment variable name per setting across all services (see DESIGN.md):
``ENV``, ``LOG_LEVEL``, ``LOG_FORMAT``, ``REDIS_URL``, ``JWT_SECRET``, ``JWT_ISSUER``,
``DATABASE_URL`` (services that use Postgres), ``HOST``, ``PORT`` and the shutdown budget.
Settings are built once in ``main`` and passed down; domain code never reads ``os.environ``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "INSECURE_JWT_SECRET",
    "DatabaseSettings",
    "Environment",
    "ServiceSettings",
]

#: The secret a developer gets when they set nothing. Accepted only with ``ENV=dev``.
INSECURE_JWT_SECRET = "chorus-dev-insecure-jwt-secret-change-me"  # noqa: S105

#: HS256 keys shorter than the hash output are brute-forceable offline (RFC 7518 §3.2).
MIN_JWT_SECRET_LENGTH = 32


class Environment(StrEnum):
    """Where a process runs; only ``dev`` tolerates insecure defaults."""

    DEV = "dev"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


class ServiceSettings(BaseSettings):
    """Settings every Chorus process has. Subclass per service; never instantiate at import."""

    model_config = SettingsConfigDict(
        env_file=None,
        extra="ignore",
        frozen=True,
        case_sensitive=False,
        validate_default=True,
    )

    # The default is production so that forgetting ENV fails safe (the secret check below).
    env: Environment = Environment.PRODUCTION
    service_name: str = "chorus"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] | None = Field(
        default=None, description="json in production, console in dev when unset"
    )
    access_log: bool = True

    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    forwarded_allow_ips: str | None = Field(
        default=None,
        description=(
            "proxies (addresses, CIDR ranges, comma-separated) whose X-Forwarded-For is "
            "trusted — the ingress controller's range; unset: '*' with ENV=dev, else 127.0.0.1"
        ),
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=64, ge=1)

    jwt_secret: SecretStr = SecretStr(INSECURE_JWT_SECRET)
    jwt_issuer: str = "chorus"
    token_version_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description=(
            "seconds a process trusts an account's token version read from Redis: a revoked "
            "token stops working everywhere within this (realtime re-checks open sockets as often)"
        ),
    )

    ready_check_timeout: float = Field(default=2.0, gt=0, description="seconds per /readyz check")
    drain_seconds: float = Field(
        default=0.0,
        ge=0,
        description="after SIGTERM: seconds to stay up not-ready while drain hooks run",
    )
    graceful_timeout: float = Field(
        default=10.0, ge=0, description="after draining: seconds uvicorn waits for requests"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_insecure_secret(self) -> Self:
        if self.env is Environment.DEV:
            return self
        secret = self.jwt_secret.get_secret_value()
        if secret == INSECURE_JWT_SECRET or len(secret) < MIN_JWT_SECRET_LENGTH:
            msg = (
                f"JWT_SECRET must be set to a random value of at least {MIN_JWT_SECRET_LENGTH} "
                f"characters when ENV={self.env.value} (only ENV=dev accepts the default)"
            )
            raise ValueError(msg)
        return self

    @property
    def is_dev(self) -> bool:
        """True when running on a developer machine."""
        return self.env is Environment.DEV

    @property
    def trusted_proxies(self) -> str:
        """``FORWARDED_ALLOW_IPS``, or its default: every peer in dev, loopback elsewhere.

        Trusting every peer (``*``) lets any client pick its own address with a forged
        ``X-Forwarded-For`` — and with it a fresh per-address budget of every limit — so
        outside a developer machine it must be asked for, never inherited.
        """
        if self.forwarded_allow_ips is not None:
            return self.forwarded_allow_ips
        return "*" if self.is_dev else "127.0.0.1"

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        """The log format, defaulting to console in dev and JSON lines elsewhere."""
        if self.log_format is not None:
            return self.log_format
        return "console" if self.is_dev else "json"


class DatabaseSettings(ServiceSettings):
    """Settings of a service that talks to Postgres."""

    database_url: str = "postgresql+asyncpg://chorus:chorus@127.0.0.1:5432/chorus"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=5.0, gt=0, description="seconds to wait for a conn")
    db_pool_recycle: int = Field(default=1800, ge=-1, description="seconds; -1 disables")
    db_pool_pre_ping: bool = True
    db_connect_timeout: float = Field(default=5.0, gt=0)
    db_statement_timeout_ms: int = Field(default=15_000, ge=0, description="0 disables")

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, value: str) -> str:
        # Managed databases hand out postgres:// URLs; accept them and pick our driver.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value.removeprefix(prefix)
        if not value.startswith("postgresql+asyncpg://"):
            msg = "DATABASE_URL must be a postgresql:// or postgresql+asyncpg:// URL"
            raise ValueError(msg)
        return value
