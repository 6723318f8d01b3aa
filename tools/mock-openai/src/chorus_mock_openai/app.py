"""The ASGI application: routing, health endpoints and lifespan.

Routes are looked up in a dict keyed by exact path (plus one prefix for
`/v1/models/{id}`); unknown URLs get OpenAI's 404 error shape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson

from chorus_mock_openai.asgi import Receive, Scope, Send, read_body, send_json
from chorus_mock_openai.auth import has_bearer_token
from chorus_mock_openai.chat import ChatCompletions
from chorus_mock_openai.config import MockConfig
from chorus_mock_openai.control import apply_config, requests_body, state_body
from chorus_mock_openai.endpoints import Completions, Embeddings, Responses
from chorus_mock_openai.errors import (
    OpenAIError,
    method_not_allowed,
    missing_api_key,
    route_not_found,
)
from chorus_mock_openai.models import model_list_body, model_object_body
from chorus_mock_openai.state import MockState

__all__ = ["MockOpenAI", "create_app"]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

_MODEL_PREFIX = "/v1/models/"
_HEALTHY = orjson.dumps({"status": "ok"})
_UVICORN_ERROR_LOGGER = "uvicorn.error"


class MockOpenAI:
    """The mock OpenAI server as a bare ASGI 3 callable; `state` is its runtime state."""

    def __init__(self, config: MockConfig) -> None:
        self.state = MockState(config)
        chat = ChatCompletions(self.state)
        self._routes: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": chat},
            "/v1/embeddings": {"POST": Embeddings(self.state)},
            "/v1/responses": {"POST": Responses(self.state)},
            "/v1/completions": {"POST": Completions(self.state)},
            "/v1/models": {"GET": self._list_models},
            "/healthz": {"GET": self._healthy},
            "/readyz": {"GET": self._healthy},
            "/_mock/config": {"GET": self._get_config, "POST": self._post_config},
            "/_mock/reset": {"POST": self._reset},
            "/_mock/requests": {"GET": self._get_requests, "DELETE": self._delete_requests},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI connection."""
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await send({"type": "websocket.close", "code": 1003})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        methods = self._routes.get(path)
        if methods is None and path.startswith(_MODEL_PREFIX):
            methods = {"GET": self._retrieve_model}
        try:
            if methods is None:
                raise route_not_found(method, path)
            handler = methods.get(method)
            if handler is None:
                raise method_not_allowed(method, path)
            await handler(scope, receive, send)
        except OpenAIError as error:
            await error.send(send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        logger = logging.getLogger(_UVICORN_ERROR_LOGGER)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                logger.addFilter(self.state.drop_log_filter)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                logger.removeFilter(self.state.drop_log_filter)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _check_auth(self, scope: Scope) -> None:
        if not self.state.config.require_auth:
            return
        authorization = next(
            (value for name, value in scope["headers"] if name == b"authorization"), None
        )
        if not has_bearer_token(authorization):
            raise missing_api_key()

    async def _list_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._check_auth(scope)
        await send_json(send, 200, model_list_body(self.state))

    async def _retrieve_model(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._check_auth(scope)
        model_id: str = scope["path"][len(_MODEL_PREFIX) :]
        await send_json(send, 200, model_object_body(self.state, model_id))

    async def _healthy(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, _HEALTHY)

    async def _get_config(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, state_body(self.state))

    async def _post_config(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if body is not None:
            await send_json(send, 200, apply_config(self.state, body))

    async def _reset(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.state.reset()
        await send_json(send, 200, state_body(self.state))

    async def _get_requests(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, await requests_body(self.state, scope["query_string"]))

    async def _delete_requests(self, scope: Scope, receive: Receive, send: Send) -> None:
        deleted = len(self.state.recorder)
        self.state.recorder.clear()
        await send_json(send, 200, orjson.dumps({"deleted": deleted}))


def create_app(config: MockConfig | None = None) -> MockOpenAI:
    """Build the mock OpenAI ASGI app; defaults to `MockConfig()`."""
    return MockOpenAI(config if config is not None else MockConfig())
