"""compose.yaml: every Chorus container would start with the environment compose gives it."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploycheck.chart import REPO
from deploycheck.compose import compose_services, interpolate, start_up
from deploycheck.contracts import settings_classes, settings_env_names

COMPOSE = REPO / "compose.yaml"
SERVICES = compose_services(COMPOSE, shell={})


def test_every_chorus_service_of_compose_is_checked() -> None:
    assert {kind for kind, _ in SERVICES.values()} == {"api", "realtime", "llm-gateway", "worker"}
    assert "migrate" in SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_environment_names_are_settings(name: str) -> None:
    kind, env = SERVICES[name]
    unknown = set(env) - set(settings_env_names(settings_classes()[kind]))
    assert not unknown, f"compose service {name}: {sorted(unknown)} are not settings of {kind}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_service_starts_with_its_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind, env = SERVICES[name]
    assert start_up(kind, env, monkeypatch) is None


def test_a_value_the_service_refuses_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gateway's keys as a bare key (what compose.yaml once had) stop its start-up.
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        COMPOSE.read_text().replace(
            "GATEWAY_API_KEYS: worker:${GATEWAY_API_KEY:-", "GATEWAY_API_KEYS: ${GATEWAY_API_KEY:-"
        )
    )
    kind, env = compose_services(broken, shell={})["llm-gateway"]
    refusal = start_up(kind, env, monkeypatch)
    assert refusal is not None
    assert "GATEWAY_API_KEYS entry 0 is not name:key" in refusal


def test_interpolation_follows_compose() -> None:
    shell = {"SET": "value", "EMPTY": ""}
    assert interpolate("${SET:-d}|${EMPTY:-d}|${UNSET:-d}", shell) == "value|d|d"
    assert interpolate("${EMPTY-d}|${UNSET-d}|$$HOME|${SET}", shell) == "|d|$HOME|value"
    assert interpolate("worker:${KEY:-dev-key}", {}) == "worker:dev-key"
    with pytest.raises(ValueError, match="UNSET"):
        interpolate("${UNSET:?needed}", shell)
