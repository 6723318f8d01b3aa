"""compose.yaml against the services: each service's environment, as it would start.

No container engine runs here, so the check does what each container's entry point does
before it serves: build the service's settings from exactly the environment compose gives
it (``${VAR:-default}`` interpolated with an empty shell environment, as a plain
``docker compose up`` would) and run its start-up validation (the app factory: the gateway
parses its providers and API keys there). A value the service would refuse fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from deploycheck.contracts import SERVICES, load_ref, settings_classes, settings_env_names

__all__ = ["compose_services", "interpolate", "start_up"]

_REFERENCE = re.compile(
    r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: str, shell: Mapping[str, str]) -> str:
    """Compose's variable substitution of ``value`` against ``shell``."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3) or ""
        current = shell.get(name)
        if operator == ":-":
            return current if current else argument
        if operator == "-":
            return current if current is not None else argument
        if operator in (":?", "?"):
            if not current:
                msg = f"required variable {name} is missing a value: {argument}"
                raise ValueError(msg)
            return current
        if operator in (":+", "+"):
            return argument if current else ""
        return current or ""

    return _REFERENCE.sub(substitute, value)


def _service_of(service: Mapping[str, Any]) -> str | None:
    """Which Chorus service a compose service runs (its image's build argument or name)."""
    build = service.get("build") or {}
    if isinstance(build, dict) and (build.get("args") or {}).get("SERVICE"):
        return str(build["args"]["SERVICE"])
    image = str(service.get("image", ""))
    match = re.match(r"chorus-([a-z-]+):", image)
    return match.group(1) if match else None


def compose_services(path: Path, shell: Mapping[str, str]) -> dict[str, tuple[str, dict[str, str]]]:
    """Compose service → (Chorus service, its interpolated environment), for Chorus images."""
    compose = yaml.safe_load(path.read_text())
    found = {}
    for name, service in compose["services"].items():
        kind = _service_of(service)
        if kind is None:
            continue
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        found[name] = (kind, {k: interpolate(str(v), shell) for k, v in environment.items()})
    return found


@contextmanager
def _environment(
    monkeypatch: pytest.MonkeyPatch, names: list[str], env: Mapping[str, str]
) -> Iterator[None]:
    with monkeypatch.context() as patch:
        for name in names:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        yield


def start_up(kind: str, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Build ``kind``'s settings from ``env`` and its app; the refusal, or None if it starts."""
    settings_class = settings_classes()[kind]
    names = list(settings_env_names(settings_class))
    with _environment(monkeypatch, names, env):
        try:
            settings = settings_class()
            factory = load_ref(SERVICES[kind][1])
            if kind == "llm-gateway":
                factory(settings, environ=dict(env))
            else:
                factory(settings)
        except (ValidationError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
    return None
