"""Worker settings: one environment variable per field, and refusals of bad combinations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chorus_worker.settings import WorkerServiceSettings

from .harness import TEST_SECRET, make_settings


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ENV": "test",
        "JWT_SECRET": TEST_SECRET,
        "SMTP_HOST": "mail.internal",
        "SMTP_PORT": "587",
        "SMTP_FROM": "Team <team@example.com>",
        "SMTP_USERNAME": "chorus",
        "SMTP_PASSWORD": "s3cret",
        "SMTP_STARTTLS": "true",
        "LLM_GATEWAY_URL": "http://gateway:8000/",
        "LLM_GATEWAY_API_KEY": "key",
        "ASSISTANT_MODEL": "small",
        "MAX_JOBS": "32",
        "JOB_COMPLETION_WAIT": "45",
        "POLL_DELAY": "0.02",
        "QUEUE_WAKEUP": "poll",
    }.items():
        monkeypatch.setenv(name, value)
    settings = WorkerServiceSettings()
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == (
        "mail.internal",
        587,
        True,
    )
    assert settings.sender_address == "team@example.com"
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "s3cret"
    assert settings.llm_gateway_url == "http://gateway:8000"
    assert (settings.assistant_model, settings.max_jobs, settings.job_completion_wait) == (
        "small",
        32,
        45,
    )
    assert (settings.poll_delay, settings.queue_wakeup) == (0.02, "poll")


def test_empty_smtp_credentials_mean_no_login(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a Secret with the optional keys left blank gives the container.
    monkeypatch.setenv("SMTP_USERNAME", "")
    monkeypatch.setenv("SMTP_PASSWORD", "")
    settings = make_settings()
    assert (settings.smtp_username, settings.smtp_password) == (None, None)


def test_defaults_are_sane() -> None:
    settings = make_settings()
    assert settings.arq_queue_name == "arq:queue"
    assert settings.service_name == "worker"
    assert settings.assistant_job_timeout > settings.assistant_timeout


@pytest.mark.parametrize(
    "values",
    [
        {"persist_interval": 7},
        {"smtp_from": "not an address"},
        {"smtp_tls": True, "smtp_starttls": True},
        {"retry_backoff_base": 10, "retry_backoff_max": 1},
        {"retry_jitter": 0.5},
        {"queue_wakeup": "magic"},
    ],
)
def test_bad_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        make_settings(**values)


def test_production_needs_a_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        WorkerServiceSettings(env="production")
