"""The settings base every service subclasses, and the mixins for what services share.

One environment variable name per setting across the whole system (``docs/design.md``
lists them): a setting two services read is declared once, here, and each service's
settings class mixes in what it reads:

- :class:`ServiceSettings` — every process: ``ENV``, ``LOG_LEVEL``, ``LOG_FORMAT``,
  ``JWT_SECRET``, ``JWT_ISSUER``, ``HOST``, ``PORT`` and the shutdown budget;
- :class:`RedisSettings` — ``REDIS_URL``, ``REDIS_MAX_CONNECTIONS``, or a Sentinel group
  (``REDIS_SENTINELS``, ``REDIS_SENTINEL_MASTER`` and the passwords) in ``REDIS_URL``'s place;
- :class:`PostgresSettings` — ``DATABASE_URL`` and the ``DB_*`` pool settings;
- :class:`QueueSettings` — ``ARQ_QUEUE_NAME``, the arq queue every producer enqueues on
  and the worker runs: one value moves them all together;
- :class:`EventHistorySettings` — ``HISTORY_SIZE``, ``HISTORY_TTL``: every publisher
  trims and expires a channel's history with them (the publish script does both on
  every event, so publishers that disagreed would undo each other); and
  ``REALTIME_REDIS_CLUSTER``, the Redis Cluster the channels live on when set (every
  publisher must write where realtime reads, with the same key layout);
- :class:`BodyLimitSettings` — ``MAX_BODY_BYTES``, the largest request body;
- :class:`TracingSettings` (in the base) — the standard ``OTEL_*`` variables tracing reads
  (``chorus_common.tracing``): off unless an OTLP endpoint is set.

A renamed setting keeps its old name for one release: the old name is a later choice of
the field's :class:`~pydantic.AliasChoices` (see :func:`renamed`), and
:meth:`ServiceSettings.deprecations` says what to change (``create_service_app`` logs it).

Settings are built once in ``main`` and passed down; domain code never reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import StrEnum
from typing import Any, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "INSECURE_JWT_SECRET",
    "BodyLimitSettings",
    "ClusterSeeds",
    "Environment",
    "EventHistorySettings",
    "PostgresSettings",
    "QueueSettings",
    "RedisSettings",
    "ServiceSettings",
    "TracingSettings",
    "parse_addresses",
    "parse_cluster_seeds",
    "renamed",
]

#: The secret a developer gets when they set nothing. Accepted only with ``ENV=dev``.
INSECURE_JWT_SECRET = "chorus-dev-insecure-jwt-secret-change-me"  # noqa: S105

#: HS256 keys shorter than the hash output are brute-forceable offline (RFC 7518 §3.2).
MIN_JWT_SECRET_LENGTH = 32

#: arq's own default queue, so a plain arq client and Chorus agree out of the box.
DEFAULT_QUEUE_NAME = "arq:queue"

#: The configuration of the base and of every mixin: pydantic merges the configs of all
#: bases in order, so a mixin with BaseSettings' defaults could otherwise undo these.
_CONFIG = SettingsConfigDict(
    env_file=None,
    extra="ignore",
    frozen=True,
    case_sensitive=False,
    validate_default=True,
)


def renamed(name: str, *old_names: str) -> AliasChoices:
    """The environment names of a renamed setting: ``name`` first, then its old names.

    The old names still work (for one release) and are reported by
    :meth:`ServiceSettings.deprecations`; when both are set, ``name`` wins.
    """
    return AliasChoices(name, *old_names)


class Environment(StrEnum):
    """Where a process runs; only ``dev`` tolerates insecure defaults."""

    DEV = "dev"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


#: The samplers of the OpenTelemetry specification (``OTEL_TRACES_SAMPLER``).
TraceSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables, by their standard names (every process).

    Tracing is on only when an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and ``OTEL_SDK_DISABLED`` is not true. The
    SDK itself reads the rest of the standard variables, as the specification says
    (``OTEL_EXPORTER_OTLP_HEADERS``, ``…_TIMEOUT``, ``…_COMPRESSION``, ``OTEL_BSP_*``,
    ``OTEL_RESOURCE_ATTRIBUTES``); the two the chart sets are declared here too.
    """

    model_config = _CONFIG

    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP base URL (…:4318); unset (and no traces endpoint) = off",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces URL, used as is (…:4318/v1/traces)"
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = Field(
        default="http/protobuf",
        validation_alias=AliasChoices(
            "otel_exporter_otlp_traces_protocol", "otel_exporter_otlp_protocol"
        ),
        description="only OTLP over HTTP with protobuf is exported (a collector's port 4318)",
    )
    otel_sdk_disabled: bool = Field(default=False, description="true turns tracing off")
    otel_traces_exporter: Literal["otlp", "none"] = Field(
        default="otlp", description="none turns tracing off"
    )
    otel_service_name: str | None = Field(
        default=None, description="service.name of the spans; default chorus-<service>"
    )
    otel_resource_attributes: str | None = Field(
        default=None, description="extra resource attributes, key=value,… (read by the SDK)"
    )
    otel_exporter_otlp_headers: SecretStr | None = Field(
        default=None, description="headers of every export, key=value,… (read by the SDK)"
    )
    otel_traces_sampler: TraceSampler = "parentbased_always_on"
    otel_traces_sampler_arg: float | None = Field(
        default=None, ge=0, le=1, description="the ratio of the *traceidratio samplers (1.0)"
    )

    @field_validator("otel_exporter_otlp_endpoint", "otel_exporter_otlp_traces_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            msg = "OTLP endpoints are http:// or https:// URLs (OTLP over HTTP, port 4318)"
            raise ValueError(msg)
        return value

    @field_validator("otel_traces_sampler", mode="before")
    @classmethod
    def _lower_sampler(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def tracing_enabled(self) -> bool:
        """True when spans are to be exported: an endpoint is set and nothing turns it off."""
        endpoint = self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint
        return bool(endpoint) and not self.otel_sdk_disabled and self.otel_traces_exporter != "none"


class ServiceSettings(TracingSettings):
    """Settings every Chorus process has. Subclass per service; never instantiate at import."""

    model_config = _CONFIG

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

    #: "OLD_NAME → NEW_NAME" of renamed settings this instance was given by an old name.
    _deprecated: tuple[tuple[str, str], ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _note_old_names(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        settings = handler(data)
        given = {k.lower() for k in data} if isinstance(data, Mapping) else set()
        environ = {k.lower() for k in os.environ}
        found: list[tuple[str, str]] = []
        for field in cls.model_fields.values():
            choices = field.validation_alias
            if not isinstance(choices, AliasChoices):
                continue
            names = [c for c in choices.choices if isinstance(c, str)]
            found += [
                (old.upper(), names[0].upper())
                for old in names[1:]
                if old.lower() in given or old.lower() in environ
            ]
        settings._deprecated = tuple(found)
        return settings

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

    def deprecations(self) -> list[str]:
        """A warning for each setting given by an old name (which stops working next release)."""
        return [
            f"{old} is deprecated and will stop working in the next release: set {new} instead"
            for old, new in self._deprecated
        ]


class RedisSettings(BaseSettings):
    """Where Redis is, for every service that talks to it: one server, or a Sentinel group.

    With ``REDIS_SENTINELS`` set, ``REDIS_URL`` is not used: the services ask the
    Sentinels which server is the primary of ``REDIS_SENTINEL_MASTER`` (database 0, with
    ``REDIS_PASSWORD``), and ask again whenever a connection to it fails.
    """

    model_config = _CONFIG

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=64, ge=1)
    redis_sentinels: str = Field(
        default="",
        description=(
            "host:port of each Redis Sentinel, comma-separated; when set, the primary of "
            "REDIS_SENTINEL_MASTER is used instead of REDIS_URL"
        ),
    )
    redis_sentinel_master: str = Field(
        default="mymaster", min_length=1, description="the name the Sentinels monitor"
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description="password of the Sentinels themselves (sentinel requirepass)"
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description="password of the Redis servers behind the Sentinels (a URL carries its own)",
    )

    @field_validator("redis_sentinels")
    @classmethod
    def _addresses(cls, value: str) -> str:
        parse_addresses(value, "REDIS_SENTINELS")
        return value

    @field_validator("redis_sentinel_password", "redis_password", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        # A Secret key present but empty (a chart value left blank) means "no password".
        return None if value == "" else value

    @property
    def sentinel_addresses(self) -> tuple[tuple[str, int], ...]:
        """``REDIS_SENTINELS`` as ``(host, port)`` pairs (empty: use ``REDIS_URL``)."""
        return parse_addresses(self.redis_sentinels, "REDIS_SENTINELS")


def parse_addresses(value: str, name: str) -> tuple[tuple[str, int], ...]:
    """``"a:26379, b:26379"`` → ``(("a", 26379), ("b", 26379))``; raises naming ``name``."""
    addresses = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = f"{name} entries are host:port, comma-separated (got {item[:60]!r})"
            raise ValueError(msg)
        addresses.append((host.strip("[]"), int(port)))
    return tuple(addresses)


class PostgresSettings(ServiceSettings):
    """Settings of a service that talks to Postgres (a base: the pool is named after it)."""

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


class QueueSettings(BaseSettings):
    """The arq queue: the api, realtime and the gateway enqueue on it, the worker runs it."""

    model_config = _CONFIG

    arq_queue_name: str = Field(
        default=DEFAULT_QUEUE_NAME,
        min_length=1,
        validation_alias=renamed("arq_queue_name", "queue_name", "gateway_usage_queue"),
        description="the arq queue (a Redis sorted set) of every producer and the worker",
    )


class EventHistorySettings(BaseSettings):
    """Where channels live and how much history each keeps, for every service that publishes.

    ``REALTIME_REDIS_CLUSTER`` moves the channels — their streams, epochs, presence and
    pub/sub — to a Redis Cluster, with hash-tagged keys (``chorus:stream:{room:lobby}``)
    and sharded pub/sub; the queue, limits and locks stay on ``REDIS_URL``. Every
    publisher (api, realtime, worker) must be given the same value.
    """

    model_config = _CONFIG

    history_size: int = Field(
        default=1000, ge=1, description="events kept per channel (approximately: MAXLEN ~)"
    )
    history_ttl: int = Field(
        default=86_400, ge=0, description="seconds a quiet channel's history lives; 0 = forever"
    )
    realtime_redis_cluster: str = Field(
        default="",
        description=(
            "seed nodes of the Redis Cluster the channels live on: host:port, comma-separated, "
            "or redis://[:password@]host:port (rediss:// for TLS); empty: channels on REDIS_URL"
        ),
    )

    @field_validator("realtime_redis_cluster")
    @classmethod
    def _seeds(cls, value: str) -> str:
        parse_cluster_seeds(value)
        return value

    @property
    def cluster_seeds(self) -> ClusterSeeds | None:
        """``REALTIME_REDIS_CLUSTER`` parsed, or None when the channels live on ``REDIS_URL``."""
        return parse_cluster_seeds(self.realtime_redis_cluster)


@dataclass(frozen=True, slots=True)
class ClusterSeeds:
    """Where to find a Redis Cluster, and how to log in to its nodes."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = dataclass_field(default=None, repr=False)
    tls: bool = False


def parse_cluster_seeds(value: str) -> ClusterSeeds | None:
    """``REALTIME_REDIS_CLUSTER`` → :class:`ClusterSeeds` (None when empty); raises on garbage.

    Entries are ``host:port`` or ``redis://[user:password@]host:port`` (``rediss://``: TLS);
    the credentials and scheme of the first URL apply to every node.
    """
    entries = [part.strip() for part in value.split(",") if part.strip()]
    if not entries:
        return None
    nodes: list[tuple[str, int]] = []
    username = password = None
    tls = False
    scheme_seen = False
    for entry in entries:
        if "://" in entry:
            parsed = urlsplit(entry)
            if parsed.scheme not in {"redis", "rediss"} or not parsed.hostname:
                msg = f"REALTIME_REDIS_CLUSTER: not a redis:// or rediss:// URL: {entry[:60]!r}"
                raise ValueError(msg)
            if not scheme_seen:
                scheme_seen = True
                tls = parsed.scheme == "rediss"
                username = unquote(parsed.username) if parsed.username else None
                password = unquote(parsed.password) if parsed.password else None
            nodes.append((parsed.hostname, parsed.port or 6379))
        else:
            nodes += parse_addresses(entry, "REALTIME_REDIS_CLUSTER")
    return ClusterSeeds(tuple(nodes), username=username, password=password, tls=tls)


#: Body limits: the api's JSON bodies are small; the gateway's prompts can be large.
API_BODY_LIMIT = 64 * 1024


def body_limit_field(default: int) -> Any:
    """``MAX_BODY_BYTES`` with a service's own default (the gateway's is larger)."""
    return Field(
        default=default,
        ge=1024,
        validation_alias=renamed("max_body_bytes", "gateway_max_body_bytes"),
        description="largest request body accepted (413 beyond)",
    )


class BodyLimitSettings(BaseSettings):
    """The largest request body an HTTP service accepts."""

    model_config = _CONFIG

    max_body_bytes: int = body_limit_field(API_BODY_LIMIT)
