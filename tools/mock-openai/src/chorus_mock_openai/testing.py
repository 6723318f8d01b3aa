"""Run the mock inside a test process: a real uvicorn server on a background thread.

    with MockServer(MockConfig(ttft_ms=20)) as mock:
        client = AsyncOpenAI(base_url=mock.api_base, api_key="sk-test")
        ...
        mock.requests(tag="my-test", wait_ms=2000)

The server has its own event loop, so it keeps serving whatever the test's
loop is doing, and timings are measured across a real loopback socket. The
helpers use only the standard library, keeping the mock's dependencies lean.
"""

from __future__ import annotations

import threading
import urllib.parse
import urllib.request
from types import TracebackType
from typing import Any, Self

import orjson

from chorus_mock_openai.app import MockOpenAI, create_app
from chorus_mock_openai.config import MockConfig
from chorus_mock_openai.server import bind_socket, build_server

__all__ = ["MockServer"]

_CONTROL_TIMEOUT_S = 30.0


class MockServer:
    """A mock OpenAI server on a loopback port, started and stopped by the caller."""

    def __init__(
        self, config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app: MockOpenAI = create_app(config)
        self._sock = bind_socket(host, port)
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://{host}:{self.port}"
        """Root URL: health and `/_mock` control endpoints live here."""
        self.api_base = self.base_url + "/v1"
        """Base URL for OpenAI clients."""
        self._server = build_server(self.app, graceful_shutdown_s=2)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> Self:
        """Start serving; clients may connect at once (the socket is already listening)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """`POST /_mock/config` with `changes`; returns the new config and fault rules."""
        return self._call("POST", "/_mock/config", changes)

    def reset(self) -> None:
        """`POST /_mock/reset`: startup config, no fault rules, empty request log."""
        self._call("POST", "/_mock/reset", {})

    def requests(self, **params: Any) -> list[dict[str, Any]]:
        """`GET /_mock/requests` with query `params` (`tag`, `limit`, `wait_ms`, …)."""
        query = urllib.parse.urlencode(params)
        data: list[dict[str, Any]] = self._call("GET", f"/_mock/requests?{query}")["data"]
        return data

    def settled(self, timeout_s: float = 5.0, **filters: Any) -> list[dict[str, Any]]:
        """Matching records once at least one exists and none is in progress (or timeout)."""
        return self.requests(wait_ms=round(timeout_s * 1000), **filters)

    def _call(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - a loopback http URL we built
            self.base_url + path,
            data=None if body is None else orjson.dumps(body),
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=_CONTROL_TIMEOUT_S) as response:  # noqa: S310
            result: dict[str, Any] = orjson.loads(response.read())
        return result
