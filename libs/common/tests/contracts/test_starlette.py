"""starlette: the matched route in the ASGI scope, which the HTTP metrics label requests by.

``chorus_common.http_metrics`` reads ``scope["route"]`` (the route the router matched, set
by starlette, not by the ASGI specification) for the bounded ``route`` label, and the api's
405 handler reads it for the path template. starlette is declared with bounds in
``pyproject.toml``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient


def test_the_router_puts_the_matched_route_in_the_scope() -> None:
    seen: list[object] = []

    async def order(request: Request) -> Response:
        seen.append(request.scope.get("route"))
        return PlainTextResponse("ok")

    route = Route("/api/orders/{order_id}", order)
    with TestClient(Starlette(routes=[route])) as client:
        assert client.get("/api/orders/42").status_code == 200
    assert seen == [route]
    assert getattr(seen[0], "path", None) == "/api/orders/{order_id}"
