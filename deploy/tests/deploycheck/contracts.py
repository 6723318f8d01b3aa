"""The chart against the services: settings fields, routes, ports.

Checks take the service classes and apps as arguments, so a test can hand them a mutated
copy (a renamed setting, a renamed probe path) and see the very same check fail.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic_settings import BaseSettings

from deploycheck.chart import Rendered

__all__ = [
    "SERVICES",
    "container_env",
    "create_apps",
    "env_violations",
    "load_ref",
    "probe_violations",
    "serves",
    "settings_classes",
    "settings_env_names",
    "shared_setting_violations",
]

#: Service → (settings class, app factory), as the entry points build them.
SERVICES = {
    "api": ("chorus_api.settings:ApiSettings", "chorus_api.main:create_app"),
    "realtime": ("chorus_realtime.settings:RealtimeSettings", "chorus_realtime.main:create_app"),
    "llm-gateway": ("chorus_gateway.settings:GatewaySettings", "chorus_gateway.main:create_app"),
    "worker": ("chorus_worker.settings:WorkerServiceSettings", "chorus_worker.main:create_app"),
}


def load_ref(ref: str) -> Any:
    """The object ``module:name`` names."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def settings_classes() -> dict[str, type[BaseSettings]]:
    """Each service's settings class."""
    return {service: load_ref(settings) for service, (settings, _) in SERVICES.items()}


#: What a service refuses to start without (the chart always provides these).
MINIMAL_SETTINGS: dict[str, dict[str, Any]] = {
    "llm-gateway": {
        "llm_providers": (
            '[{"name": "p", "base_url": "http://127.0.0.1:9/v1", "api_key": "k", "models": ["m"]}]'
        )
    },
}


def create_apps() -> dict[str, FastAPI]:
    """Each service's app, built as its entry point builds it (lifespan not started)."""
    classes = settings_classes()
    return {
        service: load_ref(factory)(classes[service](env="dev", **MINIMAL_SETTINGS.get(service, {})))
        for service, (_, factory) in SERVICES.items()
    }


def settings_env_names(settings: type[BaseSettings]) -> dict[str, bool]:
    """Environment variable name → required, for every field of a settings class."""
    prefix = str(settings.model_config.get("env_prefix", "") or "")
    names: dict[str, bool] = {}
    for name, field in settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names[(alias or prefix + name).upper()] = field.is_required()
    return names


def container_env(rendered: Rendered, container: dict[str, Any]) -> set[str]:
    """Names of the environment variables a container receives (envFrom ConfigMaps resolved)."""
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"only ConfigMap envFrom is resolvable, got {source}"
        names |= set(rendered.get("ConfigMap", ref["name"])["data"])
    return names


def _service_containers(rendered: Rendered) -> list[tuple[str, str, dict[str, Any]]]:
    """(service, where, container) of every container that runs a service's settings."""
    found = []
    for service in SERVICES:
        deployment = rendered.get("Deployment", f"chorus-{service}")
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            found.append((service, f"Deployment/chorus-{service}", container))
    for job in rendered.of_kind("Job"):  # migrations run the api's settings
        for container in job["spec"]["template"]["spec"]["containers"]:
            found.append(("api", f"Job/{job['metadata']['name']}", container))
    return found


def env_violations(rendered: Rendered, classes: Mapping[str, type[BaseSettings]]) -> list[str]:
    """Variables a container gets that its settings class lacks, and required ones it misses."""
    problems = []
    for service, where, container in _service_containers(rendered):
        fields = settings_env_names(classes[service])
        given = container_env(rendered, container)
        problems += [
            f"{where}: {name} is not a field of {classes[service].__name__}"
            for name in sorted(given - set(fields))
        ]
        problems += [
            f"{where}: required {name} of {classes[service].__name__} is not provided"
            for name, required in sorted(fields.items())
            if required and name not in given
        ]
        # Outside ENV=dev the services refuse the default JWT secret: it must be provided.
        if "JWT_SECRET" not in given:
            problems.append(f"{where}: JWT_SECRET is not provided")
    return problems


#: Settings every service that reads them must get with one value: the system's contract
#: (tokens, the job queue, event history, the shared stores).
ONE_VALUE = (
    "ARQ_QUEUE_NAME",
    "HISTORY_SIZE",
    "HISTORY_TTL",
    "JWT_ISSUER",
    "JWT_SECRET",
    "REDIS_URL",
    "DATABASE_URL",
)
#: A setting that stands for one of :data:`ONE_VALUE`: behind Sentinels, no REDIS_URL.
INSTEAD = {"REDIS_URL": "REDIS_SENTINELS"}
#: Optional shared settings: once one reader gets it, every reader must, with one value.
ONE_VALUE_WHEN_SET = (
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_PASSWORD",
    "REDIS_SENTINEL_PASSWORD",
    "REALTIME_REDIS_CLUSTER",
)


def _given(rendered: Rendered, container: dict[str, Any]) -> dict[str, object]:
    """Name → value (or the Secret key it comes from) of a container's environment."""
    given: dict[str, object] = {}
    for source in container.get("envFrom", []):
        given.update(rendered.get("ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        given[entry["name"]] = (ref["name"], ref["key"]) if ref else entry.get("value")
    return given


def shared_setting_violations(
    rendered: Rendered, classes: Mapping[str, type[BaseSettings]]
) -> list[str]:
    """Settings of :data:`ONE_VALUE` a reader is not given, or given a value of its own
    (and of :data:`ONE_VALUE_WHEN_SET`, once any reader is given one)."""
    readers: dict[str, set[str]] = {}
    for service, settings in classes.items():
        for name in settings_env_names(settings):
            readers.setdefault(name, set()).add(service)
    values: dict[str, dict[str, object]] = {}
    problems = []
    missing: dict[str, list[str]] = {}
    for service, where, container in _service_containers(rendered):
        given = _given(rendered, container)
        for name in ONE_VALUE + ONE_VALUE_WHEN_SET:
            if service not in readers.get(name, set()):
                continue
            if name in given:
                values.setdefault(name, {})[where] = given[name]
            elif name in ONE_VALUE and INSTEAD.get(name) not in given:
                problems.append(f"{where}: {name} is read by {service} but not set")
            else:
                missing.setdefault(name, []).append(
                    f"{where}: {name} is read by {service} but not set"
                )
    for name in ONE_VALUE_WHEN_SET:
        if name in values:
            problems += missing.get(name, [])
    for name, by_where in sorted(values.items()):
        if len({repr(value) for value in by_where.values()}) > 1:
            spread = ", ".join(f"{where}={value!r}" for where, value in sorted(by_where.items()))
            problems.append(f"{name} has more than one value: {spread}")
    return problems


def serves(app: FastAPI, path: str) -> bool:
    """True when ``GET path`` reaches a route of ``app`` (asked over ASGI; lifespan not run)."""
    client = TestClient(app, raise_server_exceptions=False)  # no `with`: no lifespan
    return client.get(path).status_code not in (404, 405)


def probe_violations(rendered: Rendered, apps: Mapping[str, FastAPI]) -> list[str]:
    """Probe and scrape paths the service does not serve, and ports it does not listen on."""
    problems = []
    scrape_paths = {
        endpoint["path"]
        for monitor in rendered.of_kind("ServiceMonitor")
        for endpoint in monitor["spec"]["endpoints"]
    } or {"/metrics"}
    for service, where, container in _service_containers(rendered):
        if where.startswith("Job/"):
            continue
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        config = rendered.get("ConfigMap", f"chorus-{service}")["data"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container.get(kind, {}).get("httpGet")
            if probe is None:
                problems.append(f"{where}: no HTTP {kind}")
                continue
            if not serves(apps[service], probe["path"]):
                problems.append(f"{where}: {kind} path {probe['path']} is not a route of {service}")
            if ports.get(probe["port"]) != int(config["PORT"]):
                problems.append(
                    f"{where}: {kind} port {probe['port']} is not the PORT the service listens on"
                )
        problems += [
            f"{where}: scrape path {path} is not a route of {service}"
            for path in sorted(scrape_paths)
            if not serves(apps[service], path)
        ]
    return problems
