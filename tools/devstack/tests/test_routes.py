"""The shared route table."""

from __future__ import annotations

from chorus_devstack.routes import load_routes


def test_every_design_prefix_is_routed() -> None:
    routes = {r.prefix: r for r in load_routes()}
    assert routes["/api"].service == "api"
    assert routes["/ws"].kind == "websocket"
    assert routes["/events"].kind == "stream"
    assert routes["/v1"].service == "llm-gateway"
    assert routes["/v1"].kind == "stream"


def test_longest_prefix_first() -> None:
    lengths = [len(r.prefix) for r in load_routes()]
    assert lengths == sorted(lengths, reverse=True)


def test_the_web_client_page_is_an_exact_route() -> None:
    routes = {r.prefix: r for r in load_routes()}
    # A prefix "/" would publish every service's /metrics, /readyz and /healthz.
    assert routes["/"].exact
    assert routes["/"].service == "api"
    assert not routes["/web"].exact
