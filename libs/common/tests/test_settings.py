"""Settings: one environment name per setting, old names for one release, secure defaults."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from chorus_common.app import create_service_app
from chorus_common.settings import (
    INSECURE_JWT_SECRET,
    BodyLimitSettings,
    EventHistorySettings,
    PostgresSettings,
    QueueSettings,
    RedisSettings,
    ServiceSettings,
    parse_cluster_seeds,
)


class EveryShared(
    QueueSettings, EventHistorySettings, BodyLimitSettings, RedisSettings, ServiceSettings
):
    """A service that reads every shared setting."""


class BaseFirst(ServiceSettings, QueueSettings, RedisSettings):
    """The same mixins listed after the base: the base's configuration must still hold."""


def test_reads_design_env_names(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("ENV", "staging")
    monkeypatch.setenv("JWT_SECRET", secret)
    monkeypatch.setenv("JWT_ISSUER", "issuer-x")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", "console")
    settings = EveryShared()
    assert settings.env.value == "staging"
    assert settings.jwt_issuer == "issuer-x"
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.log_level == "DEBUG"
    assert settings.effective_log_format == "console"


@pytest.mark.parametrize("env", ["production", "staging", "test"])
def test_refuses_default_secret_outside_dev(env: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        ServiceSettings(env=env)


def test_refuses_short_secret_in_production() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        ServiceSettings(env="production", jwt_secret="short")


def test_default_env_is_production_so_forgetting_env_fails_safe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ENV", raising=False)
    monkeypatch.delenv("JWT_SECRET", raising=False)
    with pytest.raises(ValidationError):
        ServiceSettings()


def test_dev_accepts_default_secret_and_logs_to_console(secret: str) -> None:
    settings = ServiceSettings(env="dev")
    assert settings.jwt_secret.get_secret_value() == INSECURE_JWT_SECRET
    assert settings.effective_log_format == "console"
    assert ServiceSettings(env="production", jwt_secret=secret).effective_log_format == "json"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db/chorus", "postgresql+asyncpg://u:p@db/chorus"),
        ("postgresql://u@db:5433/c", "postgresql+asyncpg://u@db:5433/c"),
        ("postgresql+asyncpg://u@db/c", "postgresql+asyncpg://u@db/c"),
    ],
)
def test_database_url_gets_asyncpg_driver(given: str, expected: str) -> None:
    assert PostgresSettings(env="dev", database_url=given).database_url == expected


def test_database_url_rejects_other_databases() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        PostgresSettings(env="dev", database_url="mysql://u@db/c")


def test_secret_is_not_printed(secret: str) -> None:
    settings = ServiceSettings(env="test", jwt_secret=secret)
    assert secret not in repr(settings)


def test_shared_settings_have_one_name_each(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ARQ_QUEUE_NAME": "chorus:jobs",
        "HISTORY_SIZE": "50",
        "HISTORY_TTL": "600",
        "MAX_BODY_BYTES": "4096",
        "REDIS_MAX_CONNECTIONS": "8",
    }.items():
        monkeypatch.setenv(name, value)
    settings = EveryShared(env="dev")
    assert settings.arq_queue_name == "chorus:jobs"
    assert (settings.history_size, settings.history_ttl) == (50, 600)
    assert settings.max_body_bytes == 4096
    assert settings.redis_max_connections == 8
    assert settings.deprecations() == []


@pytest.mark.parametrize(
    ("old", "new", "value", "field"),
    [
        ("QUEUE_NAME", "ARQ_QUEUE_NAME", "old:queue", "arq_queue_name"),
        ("GATEWAY_USAGE_QUEUE", "ARQ_QUEUE_NAME", "old:queue", "arq_queue_name"),
        ("GATEWAY_MAX_BODY_BYTES", "MAX_BODY_BYTES", 2048, "max_body_bytes"),
    ],
)
def test_an_old_name_still_works_for_a_release_and_is_reported(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str, value: object, field: str
) -> None:
    monkeypatch.setenv(old, str(value))
    settings = EveryShared(env="dev")
    assert getattr(settings, field) == value
    [warning] = settings.deprecations()
    assert warning.startswith(f"{old} is deprecated")
    assert warning.endswith(f"set {new} instead")


def test_the_new_name_wins_over_an_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_NAME", "old:queue")
    monkeypatch.setenv("ARQ_QUEUE_NAME", "new:queue")
    settings = EveryShared(env="dev")
    assert settings.arq_queue_name == "new:queue"
    assert len(settings.deprecations()) == 1


def test_an_old_name_given_in_code_is_reported_too() -> None:
    settings = EveryShared(env="dev", queue_name="old:queue")  # type: ignore[call-arg]
    assert settings.arq_queue_name == "old:queue"
    assert settings.deprecations()[0].startswith("QUEUE_NAME is deprecated")


def test_the_app_factory_logs_each_deprecation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GATEWAY_USAGE_QUEUE", "old:queue")
    settings = EveryShared(env="dev")
    with caplog.at_level(logging.WARNING, logger="chorus.app"):
        create_service_app(settings, title="t", version="0")
    assert any(
        r.levelno == logging.WARNING and "GATEWAY_USAGE_QUEUE is deprecated" in r.getMessage()
        for r in caplog.records
    )


def test_mixins_keep_the_base_configuration_in_any_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOT_A_SETTING", "ignored")
    for settings_class in (EveryShared, BaseFirst):
        settings = settings_class(env="dev", unknown="ignored")  # type: ignore[call-arg]
        with pytest.raises(ValidationError, match="frozen"):
            settings.arq_queue_name = "changed"  # type: ignore[misc]


def test_sentinels_and_a_cluster_are_read_from_their_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "REDIS_SENTINELS": "s1:26379, s2:26380,[::1]:26381",
        "REDIS_SENTINEL_MASTER": "chorus",
        "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
        "REDIS_PASSWORD": "",
        "REALTIME_REDIS_CLUSTER": "redis://:pw@c1:7000,c2:7001",
    }.items():
        monkeypatch.setenv(name, value)
    settings = EveryShared(env="dev")
    assert settings.sentinel_addresses == (("s1", 26379), ("s2", 26380), ("::1", 26381))
    assert settings.redis_sentinel_master == "chorus"
    assert settings.redis_sentinel_password is not None
    assert settings.redis_sentinel_password.get_secret_value() == "sentinel-secret"
    assert settings.redis_password is None  # a blank Secret key means no password
    assert "sentinel-secret" not in repr(settings)
    seeds = settings.cluster_seeds
    assert seeds is not None
    assert seeds.nodes == (("c1", 7000), ("c2", 7001))
    assert (seeds.password, seeds.tls) == ("pw", False)
    assert "pw" not in repr(seeds)


def test_without_sentinels_or_a_cluster_one_redis_holds_everything() -> None:
    settings = EveryShared(env="dev")
    assert settings.sentinel_addresses == ()
    assert settings.cluster_seeds is None
    assert parse_cluster_seeds("rediss://c:6380").tls  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "values",
    [
        {"redis_sentinels": "no-port"},
        {"redis_sentinels": "host:99999"},
        {"realtime_redis_cluster": "c1:x"},
        {"realtime_redis_cluster": "http://c1:7000"},
    ],
)
def test_redis_addresses_are_validated(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match=r"host:port|redis://"):
        EveryShared(env="dev", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "values", [{"history_size": 0}, {"history_ttl": -1}, {"max_body_bytes": 10}]
)
def test_shared_settings_are_validated(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EveryShared(env="dev", **values)  # type: ignore[arg-type]


def test_every_peer_is_a_trusted_proxy_only_in_dev(secret: str) -> None:
    # Trusting every peer lets any client write its own address into X-Forwarded-For.
    for env in ("production", "staging", "test"):
        assert ServiceSettings(env=env, jwt_secret=secret).trusted_proxies == "127.0.0.1"
    assert ServiceSettings(env="dev").trusted_proxies == "*"
    chosen = ServiceSettings(env="production", jwt_secret=secret, forwarded_allow_ips="10.0.0.0/8")
    assert chosen.trusted_proxies == "10.0.0.0/8"
