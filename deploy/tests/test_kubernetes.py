"""Every rendered object validates for Kubernetes 1.30, 1.34 and 1.37 (strict), CRDs included."""

from __future__ import annotations

import copy

import pytest
from deploycheck.chart import KUBE_VERSIONS, SCENARIOS, Rendered
from deploycheck.kube import CUSTOM_KINDS, validate_object


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_validate_strictly(
    scenarios: dict[str, Rendered], scenario: str, kube_version: str
) -> None:
    errors = [e for obj in scenarios[scenario].objects for e in validate_object(obj, kube_version)]
    assert errors == []


def test_every_custom_resource_kind_is_covered(scenarios: dict[str, Rendered]) -> None:
    kinds = set().union(*(r.kinds() for r in scenarios.values()))
    assert set(CUSTOM_KINDS) <= kinds


@pytest.mark.parametrize(
    ("kind", "name", "mutate"),
    [
        ("Deployment", "chorus-api", lambda o: o["spec"].update(bogus=1)),
        ("Deployment", "chorus-api", lambda o: o["spec"].update(replicas="two")),
        ("ServiceMonitor", "chorus", lambda o: o["spec"]["endpoints"][0].update(bogus=1)),
        ("ServiceMonitor", "chorus", lambda o: o["spec"].update(endpoints="http")),
        ("PrometheusRule", "chorus", lambda o: o["spec"]["groups"][0].update(bogus=1)),
        (
            "HTTPRoute",
            "chorus",
            lambda o: o["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix"),
        ),
        ("HTTPRoute", "chorus", lambda o: o["spec"].update(bogus=1)),
    ],
)
def test_validation_catches_a_broken_object(
    scenarios: dict[str, Rendered], kind: str, name: str, mutate
) -> None:  # type: ignore[no-untyped-def]
    source = next(r for r in scenarios.values() if kind in r.kinds())
    broken = copy.deepcopy(source.get(kind, name))
    mutate(broken)
    assert validate_object(broken, "1.34") != []
