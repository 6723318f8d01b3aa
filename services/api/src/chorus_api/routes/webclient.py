"""The browser client's static files: the page at ``/``, its modules and styles under ``/web``.

The client is plain ES modules and CSS (no build step), shipped as package data of
``chorus_api`` so the api image carries it. The ingress routes ``/`` (exactly) and ``/web``
here (``deploy/helm/chorus/files/routes.yaml``); a prefix ``/`` would also publish
``/metrics`` and the probes.

Every response carries a strict Content-Security-Policy: scripts, styles, images and
connections from this origin only (``'self'`` covers ``ws:``/``wss:`` to the same host in
CSP 3), no inline code, no plugins, no framing, no form posts. The files are not
content-hashed, so they are served ``Cache-Control: no-cache`` with an ``ETag``: a reload
revalidates each file and gets a 304 when nothing changed, and a deploy is seen at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "install_web_client"]

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"

CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class _WebFiles(StaticFiles):
    """StaticFiles (ETag, Last-Modified, 304s) plus the headers above on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def install_web_client(app: FastAPI, directory: Path = STATIC_DIR) -> None:
    """Serve ``directory/index.html`` at ``/`` and the rest of ``directory`` under ``/web``."""
    files = _WebFiles(directory=directory)

    async def index(request: Request) -> Response:
        return await files.get_response("index.html", request.scope)

    app.add_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/web", files, name="web")
