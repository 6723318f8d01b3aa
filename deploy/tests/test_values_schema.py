"""values.schema.json is strict: unknown keys and wrong types are refused at every level."""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import pytest
from deploycheck.chart import CHART, SCENARIOS, load_scenario, render

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def _objects(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if schema.get("type") == "object" or "properties" in schema:
        found.append((path or "<root>", schema))
    for key, sub in schema.get("properties", {}).items():
        found += _objects(sub, f"{path}.{key}" if path else key)
    if isinstance(schema.get("items"), dict):
        found += _objects(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _objects(schema["additionalProperties"], f"{path}.*")
    return found


def test_every_object_in_the_schema_is_closed() -> None:
    open_ = [
        path
        for path, schema in _objects(SCHEMA)
        if "additionalProperties" not in schema and "description" not in schema
    ]
    # Pass-through Kubernetes objects (affinity, tolerations, peers) say so in a description.
    assert open_ == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_is_valid(scenario: str) -> None:
    render(load_scenario(scenario))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bogus": True}, "additional properties 'bogus' not allowed"),
        ({"api": {"bogus": 1}}, "additional properties 'bogus' not allowed"),
        ({"realtime": {"autoscaling": {"connections": {"bogus": 1}}}}, "'bogus' not allowed"),
        ({"ingress": {"tls": [{"secretName": "x", "bogus": 1}]}}, "'bogus' not allowed"),
        ({"api": {"replicas": "two"}}, "got string, want integer"),
        ({"api": {"replicas": -1}}, "minimum"),
        ({"postgres": {"enabled": "yes"}}, "got string, want boolean"),
        ({"config": {"env": "prod"}}, "value must be one of"),
        ({"api": {"extraEnv": {"lower_case": "x"}}}, "lower_case"),
        ({"secrets": {"jwtSecret": "short"}}, "jwtSecret"),
        ({"api": {"image": {"digest": "latest"}}}, "digest"),
        ({"httpRoute": {"parentRefs": [{"namespace": "x"}]}}, "name"),
    ],
)
def test_bad_values_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)
