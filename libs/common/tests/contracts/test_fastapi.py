"""FastAPI: the matched route in the ASGI scope, as for plain starlette routes.

``chorus_common.http_metrics`` labels requests by ``scope["route"].path``; FastAPI's
routes put themselves there when they match (``test_starlette`` covers plain routes).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient


def test_a_fastapi_route_puts_itself_in_the_scope() -> None:
    app = FastAPI()
    seen: list[str | None] = []

    @app.get("/api/users/{user_id}")
    async def user(user_id: int, request: Request) -> dict[str, int]:
        seen.append(getattr(request.scope.get("route"), "path", None))
        return {"id": user_id}

    with TestClient(app) as client:
        assert client.get("/api/users/7").json() == {"id": 7}
    assert seen == ["/api/users/{user_id}"]
