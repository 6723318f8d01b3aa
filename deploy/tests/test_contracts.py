"""The chart against the services it deploys (the contracts of ``docs/design.md``).

Every environment variable a container gets is a field of its service's settings class and
every required field is provided; every probe/scrape path is a route of the service and the
probed port is the one it listens on; every metric an alert or a dashboard panel names is
exported by a running service (the devstack, scraped live). Each check is also shown to fail
on a mutated copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from deploycheck.chart import REPO, SCENARIOS, Rendered, render
from deploycheck.contracts import (
    create_apps,
    env_violations,
    probe_violations,
    serves,
    settings_classes,
    shared_setting_violations,
)
from deploycheck.metrics import (
    dashboard_exprs,
    exported_names,
    missing_metrics,
    referenced_metrics,
    rule_exprs,
)
from fastapi import FastAPI
from pydantic import create_model
from pydantic_settings import BaseSettings
from starlette.routing import compile_path

from chorus_devstack.stack import Ports, Stack, StackOptions

RULES = REPO / "deploy" / "prometheus" / "chorus.rules.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "chorus.json"


@pytest.fixture(scope="module")
def apps() -> dict[str, FastAPI]:
    return create_apps()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_env_vars_are_settings_fields(scenarios: dict[str, Rendered], scenario: str) -> None:
    assert env_violations(scenarios[scenario], settings_classes()) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probe_paths_and_ports_are_served(
    scenarios: dict[str, Rendered], scenario: str, apps: dict[str, FastAPI]
) -> None:
    assert probe_violations(scenarios[scenario], apps) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_shared_settings_have_one_value_for_every_service(
    scenarios: dict[str, Rendered], scenario: str
) -> None:
    assert shared_setting_violations(scenarios[scenario], settings_classes()) == []


def test_a_service_given_its_own_queue_or_history_fails_the_check() -> None:
    rendered = render(
        {
            "worker": {"extraEnv": {"ARQ_QUEUE_NAME": "worker:only"}},
            "realtime": {"extraEnv": {"HISTORY_SIZE": "50"}},
        }
    )
    problems = shared_setting_violations(rendered, settings_classes())
    assert any(p.startswith("ARQ_QUEUE_NAME has more than one value") for p in problems)
    assert any(p.startswith("HISTORY_SIZE has more than one value") for p in problems)


def test_a_service_that_misses_a_shared_setting_fails_the_check(default: Rendered) -> None:
    classes = settings_classes()
    problems = shared_setting_violations(default, {**classes, "llm-gateway": classes["api"]})
    assert "Deployment/chorus-llm-gateway: HISTORY_SIZE is read by llm-gateway but not set" in (
        problems
    )


def test_a_setting_renamed_in_a_service_fails_the_check(default: Rendered) -> None:
    classes = settings_classes()
    original = classes["api"]
    fields = {
        ("drain_window" if name == "drain_seconds" else name): (f.annotation, f)
        for name, f in original.model_fields.items()
    }
    renamed = create_model("ApiSettings", __base__=BaseSettings, **fields)  # type: ignore[call-overload]
    problems = env_violations(default, {**classes, "api": renamed})
    assert "Deployment/chorus-api: DRAIN_SECONDS is not a field of ApiSettings" in problems


def test_a_required_setting_the_chart_omits_fails_the_check(default: Rendered) -> None:
    classes = settings_classes()
    stricter = create_model("WorkerSettings", __base__=classes["worker"], webhook_url=(str, ...))
    problems = env_violations(default, {**classes, "worker": stricter})
    assert (
        "Deployment/chorus-worker: required WEBHOOK_URL of WorkerSettings is not provided"
        in problems
    )


def test_a_probe_path_renamed_in_a_service_fails_the_check(default: Rendered) -> None:
    apps = create_apps()
    (route,) = [r for r in _walk(apps["realtime"].routes) if getattr(r, "path", None) == "/readyz"]
    route.path = "/ready"
    route.path_regex, route.path_format, route.param_convertors = compile_path("/ready")
    assert serves(apps["realtime"], "/ready")
    problems = probe_violations(default, apps)
    assert (
        "Deployment/chorus-realtime: readinessProbe path /readyz is not a route of realtime"
        in problems
    )


def _walk(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        yield route
        if hasattr(route, "original_router"):  # FastAPI >= 0.16x nests included routers
            yield from _walk(route.original_router.routes)
        elif hasattr(route, "routes"):
            yield from _walk(route.routes)


# -- metrics, against the live devstack ------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Metric names the running services export, after a little traffic to each."""
    stack = Stack(
        StackOptions(
            state_dir=Path(tmp_path_factory.mktemp("stack")), ports=Ports.free(), nginx=False
        )
    )
    with stack, httpx.Client(trust_env=False, timeout=10) as client:
        names = ["api", *stack.replicas("realtime"), *stack.replicas("llm-gateway"), "worker"]
        for name in names:
            base = stack.url(name)
            for path in ("/healthz", "/readyz", "/no-such-route"):
                client.get(base + path)
        client.get(stack.url("api") + "/api/openapi.json")
        client.get(stack.url("llm-gateway-1") + "/v1/models")
        client.get(stack.url("realtime-1") + "/rooms/lobby/presence")
        found: set[str] = set()
        for name in names:
            response = client.get(stack.url(name) + "/metrics")
            assert response.status_code == 200, name
            found |= exported_names(response.text)
        yield found


def test_alert_metrics_are_exported(exported: set[str]) -> None:
    assert sorted(missing_metrics(referenced_metrics(rule_exprs(RULES)), exported)) == []


def test_dashboard_metrics_are_exported(exported: set[str]) -> None:
    assert sorted(missing_metrics(referenced_metrics(dashboard_exprs(DASHBOARD)), exported)) == []


def test_an_alert_on_an_unknown_metric_fails_the_check(exported: set[str], tmp_path: Path) -> None:
    rules = yaml.safe_load(RULES.read_text())
    rules["groups"][0]["rules"].append(
        {"alert": "Bogus", "expr": 'rate(chorus_api_bogus_total{job="chorus-api"}[5m]) > 0'}
    )
    mutated = tmp_path / "rules.yaml"
    mutated.write_text(yaml.safe_dump(rules))
    assert "chorus_api_bogus_total" in missing_metrics(
        referenced_metrics(rule_exprs(mutated)), exported
    )
    # And the names the services do export are found (the check is not vacuous).
    assert {
        "chorus_http_requests_total",
        "chorus_http_request_duration_seconds_bucket",
        "chorus_ready",
    } <= exported


def test_a_publisher_not_told_where_the_channels_live_fails_the_check(default: Rendered) -> None:
    # Every publisher is given REALTIME_REDIS_CLUSTER (an optional Secret key); a service
    # that read it too but was not given it would publish where nobody listens.
    classes = settings_classes()
    problems = shared_setting_violations(default, {**classes, "llm-gateway": classes["api"]})
    assert (
        "Deployment/chorus-llm-gateway: REALTIME_REDIS_CLUSTER is read by llm-gateway but not set"
        in problems
    )
