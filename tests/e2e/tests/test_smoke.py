"""The system is up and reachable through the ingress only."""

from __future__ import annotations

import httpx

from chorus_devstack.stack import Stack


def test_every_service_is_ready(stack: Stack) -> None:
    names = ["api", *stack.replicas("realtime"), *stack.replicas("llm-gateway"), "worker"]
    with httpx.Client(trust_env=False) as client:
        for name in names:
            assert client.get(f"{stack.url(name)}/readyz").status_code == 200, name


def test_the_ingress_serves_the_api_and_hides_operations(ingress: str) -> None:
    with httpx.Client(base_url=ingress, trust_env=False) as client:
        assert client.get("/api/openapi.json").json()["info"]["title"] == "Chorus API"
        # Operational endpoints are not routed by the ingress.
        for path in ("/metrics", "/readyz", "/healthz"):
            assert client.get(path).status_code == 404
