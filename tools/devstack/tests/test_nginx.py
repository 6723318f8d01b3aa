"""The generated nginx config: valid for real nginx, and routing as the chart does."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from chorus_devstack.nginx import nginx_spec, render_nginx_conf
from chorus_devstack.ports import free_port, port_accepts
from chorus_devstack.process import ManagedProcess
from chorus_devstack.routes import load_routes
from chorus_devstack.testing import serve_app


def echo_app(name: str) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "service": name,
                "path": request.url.path,
                "forwarded_for": request.headers.get("x-forwarded-for"),
                "request_id": request.headers.get("x-request-id"),
            }
        )

    async def stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: one\n\n"
            yield b"data: two\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/{path:path}", echo), Route("/events/stream", stream)])


@pytest.fixture
async def upstreams() -> AsyncIterator[dict[str, list[str]]]:
    async with (
        serve_app(echo_app("api")) as api,
        serve_app(echo_app("realtime")) as rt,
        serve_app(echo_app("llm-gateway")) as gw,
    ):
        yield {
            "api": [f"127.0.0.1:{api.config.port}"],
            "realtime": [f"127.0.0.1:{rt.config.port}", f"127.0.0.1:{free_port()}"],
            "llm-gateway": [f"127.0.0.1:{gw.config.port}"],
        }


@pytest.fixture
def ingress(tmp_path: Path, upstreams: dict[str, list[str]]) -> Iterator[str]:
    port = free_port()
    conf = render_nginx_conf(
        routes=load_routes(), upstreams=upstreams, listen=f"127.0.0.1:{port}", prefix=tmp_path
    )
    spec = nginx_spec(tmp_path, conf, ready_url="")
    # The upstreams run in this test's event loop, which a blocking probe through nginx
    # would starve: nginx is ready when it accepts connections.
    spec.ready_url, spec.ready_check = None, lambda: port_accepts(port)
    process = ManagedProcess(spec, tmp_path)
    process.start()
    process.wait_ready(timeout=20)
    yield f"http://127.0.0.1:{port}"
    process.stop()


def test_config_passes_nginx_t(tmp_path: Path) -> None:
    conf = render_nginx_conf(
        routes=load_routes(),
        upstreams={"api": ["127.0.0.1:1"], "realtime": ["127.0.0.1:2", "127.0.0.1:3"]},
        listen="127.0.0.1:1",
        prefix=tmp_path,
    )
    spec = nginx_spec(tmp_path, conf, ready_url="http://unused")
    result = subprocess.run([*spec.argv, "-t"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api", "api"),
        ("/api/openapi.json", "api"),
        ("/rooms/lobby/presence", "realtime"),
        ("/v1/models", "llm-gateway"),
        ("/chat/stream", "llm-gateway"),
        ("/", "api"),
        ("/web/app.js", "api"),
    ],
)
async def test_prefixes_route_to_their_service(ingress: str, path: str, service: str) -> None:
    async with httpx.AsyncClient(base_url=ingress, trust_env=False) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.json()["service"] == service
    # Services get the full path: no rewrites.
    assert response.json()["path"] == path


@pytest.mark.parametrize("path", ["/apix", "/v10/models", "/index.html", "/metrics", "/readyz"])
async def test_prefixes_match_whole_segments_only(ingress: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=ingress, trust_env=False) as client:
        response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_forwarded_headers_and_request_id(ingress: str) -> None:
    async with httpx.AsyncClient(base_url=ingress, trust_env=False) as client:
        generated = (await client.get("/api/a")).json()
        kept = (await client.get("/api/a", headers={"X-Request-ID": "from-client"})).json()
    assert generated["forwarded_for"] == "127.0.0.1"
    assert len(generated["request_id"]) == 32
    assert kept["request_id"] == "from-client"


async def test_a_dead_replica_is_skipped(ingress: str) -> None:
    # The second realtime upstream listens nowhere: every request still succeeds.
    async with httpx.AsyncClient(base_url=ingress, trust_env=False) as client:
        for _ in range(6):
            response = await client.get("/rooms/r/presence")
            assert response.status_code == 200
