"""Settings: DESIGN.md's env names, secure defaults outside dev."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chorus_common.settings import INSECURE_JWT_SECRET, DatabaseSettings, ServiceSettings


def test_reads_design_env_names(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("ENV", "staging")
    monkeypatch.setenv("JWT_SECRET", secret)
    monkeypatch.setenv("JWT_ISSUER", "issuer-x")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", "console")
    settings = ServiceSettings()
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
    assert DatabaseSettings(env="dev", database_url=given).database_url == expected


def test_database_url_rejects_other_databases() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        DatabaseSettings(env="dev", database_url="mysql://u@db/c")


def test_secret_is_not_printed(secret: str) -> None:
    settings = ServiceSettings(env="test", jwt_secret=secret)
    assert secret not in repr(settings)


def test_every_peer_is_a_trusted_proxy_only_in_dev(secret: str) -> None:
    # Trusting every peer lets any client write its own address into X-Forwarded-For.
    for env in ("production", "staging", "test"):
        assert ServiceSettings(env=env, jwt_secret=secret).trusted_proxies == "127.0.0.1"
    assert ServiceSettings(env="dev").trusted_proxies == "*"
    chosen = ServiceSettings(env="production", jwt_secret=secret, forwarded_allow_ips="10.0.0.0/8")
    assert chosen.trusted_proxies == "10.0.0.0/8"
