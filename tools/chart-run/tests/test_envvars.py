"""The environment the kubelet builds: order, references, expansion, and its refusals."""

from __future__ import annotations

import base64

import pytest

from chorus_chartrun.envvars import ConfigError, PodFacts, container_env, expand, service_link_env
from chorus_chartrun.objects import Store

POD = PodFacts(
    name="api-7d9f-abcde",
    namespace="chorus",
    uid="uid-1",
    node_name="node",
    host_ip="10.244.0.1",
    pod_ip="10.244.0.7",
    labels={"app": "api"},
    annotations={"note": "hi"},
)


def _store() -> Store:
    store = Store()
    store.apply(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "config", "namespace": "chorus"},
            "data": {"PORT": "8000", "LOG_LEVEL": "INFO", "bad name": "skipped", "HOST": "0.0.0.0"},
        }
    )
    secret = {"TOKEN": base64.b64encode(b"s3cret").decode(), "EMPTY": ""}
    store.apply(
        {"kind": "Secret", "metadata": {"name": "secret", "namespace": "chorus"}, "data": secret}
    )
    return store


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "a-b"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("cost $5", "cost $5"),
        ("$(A", "$(A"),
        ("end$", "end$"),
        ("$(A)$(A)", "aa"),
    ],
)
def test_expansion_follows_kubernetes(text: str, expected: str) -> None:
    assert expand(text, {"A": "a", "B": "b"}.get) == expected


def test_env_from_then_env_with_references_expanded_against_what_came_before() -> None:
    container = {
        "name": "api",
        "envFrom": [
            {"configMapRef": {"name": "config"}},
            {"prefix": "S_", "secretRef": {"name": "secret"}},
        ],
        "env": [
            {"name": "URL", "value": "http://$(HOST):$(PORT)/$(LATER)"},
            {"name": "LATER", "value": "x"},
            {"name": "PORT", "value": "9000"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "secret", "key": "TOKEN"}}},
            {
                "name": "LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "config", "key": "LOG_LEVEL"}},
            },
            {
                "name": "OPTIONAL",
                "valueFrom": {"secretKeyRef": {"name": "secret", "key": "NO", "optional": True}},
            },
            {
                "name": "CPU",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
            },
        ],
        "resources": {"limits": {"cpu": "1500m"}},
    }
    env = container_env(container, pod=POD, store=_store())
    assert env["URL"] == "http://0.0.0.0:8000/$(LATER)"
    assert env["PORT"] == "9000"
    assert "bad name" not in env
    assert env["S_TOKEN"] == "s3cret"
    assert env["S_EMPTY"] == ""
    assert (env["NAME"], env["APP"], env["IP"]) == ("api-7d9f-abcde", "api", "10.244.0.7")
    assert (env["TOKEN"], env["LEVEL"], env["CPU"]) == ("s3cret", "INFO", "1500")
    assert "OPTIONAL" not in env


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"secretKeyRef": {"name": "secret", "key": "NOPE"}},
            "couldn't find key NOPE in Secret chorus/secret",
        ),
        ({"secretKeyRef": {"name": "nosecret", "key": "K"}}, 'secret "nosecret" not found'),
        (
            {"configMapKeyRef": {"name": "config", "key": "NOPE"}},
            "couldn't find key NOPE in ConfigMap chorus/config",
        ),
        ({"fieldRef": {"fieldPath": "spec.priority"}}, "unsupported fieldRef fieldPath"),
    ],
)
def test_a_missing_reference_is_the_kubelets_config_error(
    entry: dict[str, object], message: str
) -> None:
    container = {"name": "c", "env": [{"name": "X", "valueFrom": entry}]}
    with pytest.raises(ConfigError, match=message):
        container_env(container, pod=POD, store=_store())


def test_a_missing_env_from_source_fails_unless_optional() -> None:
    missing = {"name": "c", "envFrom": [{"configMapRef": {"name": "other"}}]}
    with pytest.raises(ConfigError, match='configmap "other" not found'):
        container_env(missing, pod=POD, store=_store())
    optional = {"name": "c", "envFrom": [{"configMapRef": {"name": "other", "optional": True}}]}
    assert container_env(optional, pod=POD, store=_store()) == {}


def test_service_links_name_every_port() -> None:
    service = {
        "metadata": {"name": "chorus-api"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 8000}]},
    }
    env = service_link_env([service])
    assert env["CHORUS_API_SERVICE_HOST"] == "10.96.0.10"
    assert env["CHORUS_API_SERVICE_PORT_HTTP"] == "8000"
    assert env["CHORUS_API_PORT_8000_TCP"] == "tcp://10.96.0.10:8000"
