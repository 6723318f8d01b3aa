"""Ingress and HTTPRoute objects read as ingress-nginx and a Gateway would read them."""

from __future__ import annotations

from typing import Any

import pytest
from chartrun_manifests import ingress

from chorus_chartrun.routing import Backend, RoutingError, from_httproutes, from_ingresses


def test_each_ingress_object_keeps_its_own_annotations() -> None:
    plain = ingress("chorus", None, [("/api", "Prefix", "api"), ("/", "Exact", "api")])
    streaming = ingress(
        "chorus-streaming",
        None,
        [("/ws", "Prefix", "realtime")],
        annotations={
            "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
            "nginx.ingress.kubernetes.io/proxy-buffering": "off",
            "nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
            "nginx.ingress.kubernetes.io/proxy-http-version": "1.1",
            "cert-manager.io/cluster-issuer": "for another controller",
        },
    )
    [server] = from_ingresses([plain, streaming])
    by_path = {loc.path: loc for loc in server.locations}
    assert server.host is None
    assert by_path["/api"].read_timeout == "60s"
    assert by_path["/api"].request_buffering is True
    assert (by_path["/ws"].read_timeout, by_path["/ws"].request_buffering) == ("3600s", False)
    assert by_path["/"].exact
    assert by_path["/ws"].backend == Backend("realtime", "http")


def test_tls_hosts_get_their_secret_and_the_http_redirect() -> None:
    tls_ingress = ingress(
        "chorus",
        "chorus.example.com",
        [("/api", "Prefix", "api")],
        tls=[{"secretName": "chorus-tls", "hosts": ["chorus.example.com"]}],
    )
    [server] = from_ingresses([tls_ingress])
    assert (server.host, server.tls_secret, server.ssl_redirect) == (
        "chorus.example.com",
        "chorus/chorus-tls",
        True,
    )


def test_another_ingress_class_is_not_ours() -> None:
    traefik = ingress("other", None, [("/x", "Prefix", "x")])
    traefik["spec"]["ingressClassName"] = "traefik"
    assert from_ingresses([traefik]) == []


@pytest.mark.parametrize(
    ("ingresses", "message"),
    [
        (
            [
                ingress(
                    "a",
                    None,
                    [("/x", "Prefix", "x")],
                    annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/"},
                )
            ],
            "rewrite-target is not implemented",
        ),
        (
            [
                ingress(
                    "a",
                    None,
                    [("/x", "Prefix", "x")],
                    annotations={"nginx.ingress.kubernetes.io/proxy-read-timeout": "1h"},
                )
            ],
            "expected a number of seconds",
        ),
        (
            [ingress("a", None, [("/x", "ImplementationSpecific", "x")])],
            "pathType 'ImplementationSpecific'",
        ),
        (
            [
                ingress("a", None, [("/x", "Prefix", "x")]),
                ingress("b", None, [("/x", "Prefix", "y")]),
            ],
            "already routed by Ingress/a",
        ),
    ],
)
def test_what_ingress_nginx_would_not_do_as_asked_is_refused(
    ingresses: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(RoutingError, match=message):
        from_ingresses(ingresses)


GATEWAY = {
    "kind": "Gateway",
    "metadata": {"name": "public", "namespace": "gateway-system"},
    "spec": {
        "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {
                "name": "https",
                "port": 443,
                "protocol": "HTTPS",
                "tls": {"certificateRefs": [{"name": "cert"}]},
            },
        ]
    },
}
SERVICES = {"api": {"spec": {"ports": [{"port": 8000}]}}}


def _route(**changes: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
        "backendRefs": [{"name": "api", "port": 8000}],
        "timeouts": {"request": "0s"},
    }
    rule.update(changes.pop("rule", {}))
    spec: dict[str, Any] = {
        "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
        "hostnames": ["chorus.example.com"],
        "rules": [rule],
    }
    spec.update(changes)
    return {
        "kind": "HTTPRoute",
        "metadata": {"name": "chorus", "namespace": "chorus"},
        "spec": spec,
    }


def test_an_httproute_attaches_to_the_listener_it_names() -> None:
    [server] = from_httproutes([_route()], [GATEWAY], SERVICES)
    [location] = server.locations
    assert (server.host, server.tls_secret, server.hsts) == (
        "chorus.example.com",
        "gateway-system/cert",
        False,
    )
    assert location.read_timeout == "86400s"  # "0s" disables the request timeout


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            _route(parentRefs=[{"name": "private", "namespace": "gateway-system"}]),
            "no such Gateway",
        ),
        (
            _route(
                parentRefs=[
                    {"name": "public", "namespace": "gateway-system", "sectionName": "grpc"}
                ]
            ),
            "has no listener 'grpc'",
        ),
        (_route(rule={"backendRefs": [{"name": "nope", "port": 8000}]}), "BackendNotFound"),
        (
            _route(rule={"backendRefs": [{"name": "api", "port": 9000}]}),
            "is not a port of it",
        ),
        (_route(rule={"timeouts": {"request": "15 seconds"}}), "not a Gateway API duration"),
        (
            _route(rule={"matches": [{"headers": [{"name": "x", "value": "y"}]}]}),
            "only path matches",
        ),
    ],
)
def test_an_httproute_a_gateway_would_not_accept_is_refused(
    route: dict[str, Any], message: str
) -> None:
    with pytest.raises(RoutingError, match=message):
        from_httproutes([route], [GATEWAY], SERVICES)
