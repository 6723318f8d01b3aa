"""The nginx configuration the ingress controller writes: real nginx, routing as asked."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import chartrun_manifests as manifests
import httpx
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chorus_chartrun.ingress import render
from chorus_chartrun.routing import Backend, from_ingresses
from chorus_devstack.nginx import nginx_binary
from chorus_devstack.ports import free_port, port_accepts
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_devstack.testing import serve_app

HOST = "chorus.example.com"


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "path": request.url.path,
            "host": request.headers["host"],
            "proto": request.headers.get("x-forwarded-proto"),
        }
    )


@pytest.fixture
async def backend() -> AsyncIterator[int]:
    async with serve_app(Starlette(routes=[Route("/{path:path}", _echo)])) as server:
        yield int(server.config.port)


@pytest.fixture
def nginx(tmp_path: Path, backend: int) -> Iterator[tuple[int, int, ssl.SSLContext]]:
    binary = nginx_binary()
    assert binary, "nginx is missing: make test-unit installs it"
    ca = trustme.CA()
    certs = {}
    for name, hosts in {"default": ["ingress.local"], "tls": [HOST]}.items():
        issued = ca.issue_cert(*hosts)
        cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        certs[name] = (cert, key)
    servers = from_ingresses(
        [
            manifests.ingress(
                "open",
                None,
                [("/api", "Prefix", "api"), ("/", "Exact", "api"), ("/ws", "Prefix", "realtime")],
            ),
            manifests.ingress(
                "secure",
                HOST,
                [("/api", "Prefix", "api")],
                tls=[{"secretName": "tls", "hosts": [HOST]}],
            ),
        ]
    )

    def endpoints(target: Backend) -> list[tuple[str, int]]:
        return [("127.0.0.1", backend)] if target.service == "api" else []

    http, https = free_port(), free_port()
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / kind).mkdir(parents=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render(
            servers,
            endpoints,
            lambda _: certs["tls"],
            prefix=tmp_path,
            default_certificate=certs["default"],
            address="127.0.0.1",
            ports=(http, https),
        )
    )
    checked = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    process = ManagedProcess(
        # Ready once it listens (a request would need the backend, which runs on this loop).
        ProcessSpec(
            name="nginx",
            argv=[binary, "-p", str(tmp_path), "-c", str(conf)],
            ready_check=lambda: port_accepts(http),
        ),
        tmp_path,
    )
    process.start()
    try:
        process.wait_ready(20)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        yield http, https, context
    finally:
        process.stop()


async def test_paths_match_whole_segments_and_exact_paths_only_themselves(
    nginx: tuple[int, int, ssl.SSLContext],
) -> None:
    http, _, _ = nginx
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}", trust_env=False) as client:
        assert (await client.get("/api")).json()["path"] == "/api"
        assert (await client.get("/api/users/1")).json()["path"] == "/api/users/1"
        assert (await client.get("/apix")).status_code == 404
        assert (await client.get("/")).json()["path"] == "/"
        assert (await client.get("/web/app.js")).status_code == 404
        # A Service with no ready endpoint answers 503, as ingress-nginx does.
        assert (await client.get("/ws/lobby")).status_code == 503


async def test_a_tls_host_is_served_over_https_and_redirected_from_http(
    nginx: tuple[int, int, ssl.SSLContext],
) -> None:
    http, https, context = nginx
    async with httpx.AsyncClient(trust_env=False, verify=context) as client:
        plain = await client.get(f"http://127.0.0.1:{http}/api/x", headers={"Host": HOST})
        assert plain.status_code == 308
        assert plain.headers["location"] == f"https://{HOST}/api/x"
        secure = await client.get(
            f"https://127.0.0.1:{https}/api/x",
            headers={"Host": HOST},
            extensions={"sni_hostname": HOST},
        )
        assert secure.status_code == 200
        assert secure.json() == {"path": "/api/x", "host": HOST, "proto": "https"}
        assert "max-age=31536000" in secure.headers["strict-transport-security"]
