"""starlette: what ``transport/fast_path.py`` relies on beyond starlette's public API.

``FastPath`` matches paths with ``starlette._utils.get_route_path`` (the path without the
mount's ``root_path``, as the router sees it), calls a ``Route``'s ASGI app directly, and is
installed by replacing the app's ``build_middleware_stack``, which Starlette calls once, on
the first request. starlette is pinned below its next minor release in ``pyproject.toml``.
"""

from __future__ import annotations

import inspect

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send


def test_get_route_path_is_the_path_below_the_root_path() -> None:
    assert list(inspect.signature(get_route_path).parameters) == ["scope"]
    assert get_route_path({"path": "/v1/chat/completions", "root_path": ""}) == (
        "/v1/chat/completions"
    )
    assert get_route_path({"path": "/llm/v1/models", "root_path": "/llm"}) == "/v1/models"


class Endpoint:
    """A raw ASGI endpoint, as the completion routes are."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Unused."""


def test_a_route_keeps_an_asgi_endpoint_as_its_app() -> None:
    endpoint = Endpoint()
    assert Route("/x", endpoint, methods=["POST"]).app is endpoint


async def test_the_middleware_stack_is_built_by_the_replaceable_method_on_first_use() -> None:
    app = Starlette()
    assert app.middleware_stack is None
    called: list[str] = []

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope["path"])

    def build() -> ASGIApp:
        return front

    app.build_middleware_stack = build  # type: ignore[method-assign]

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: object) -> None:
        """Unused: the stand-in answers nothing."""

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert called == ["/v1/chat/completions"]
    assert app.middleware_stack is front
