"""``/api/docs``: Swagger UI served by the api itself — no script from a CDN on our origin.

FastAPI's default docs page loads Swagger UI's script and styles from a public CDN into a
page of our origin: whoever controls that CDN (or a path to it) runs code as us, next to
the tokens people paste into "Authorize". Here the files come from the ``fastapi-offline``
wheel (Swagger UI 5.32, pinned with that package; only its ``static/`` files are used)
and are served under ``/api/docs/``. The page has no inline script — the initializer is a
file of its own — and a Content-Security-Policy that allows scripts, styles, images and
connections from this origin only (images also ``data:``: Swagger UI's stylesheet draws
its icons with them). ``tests/browser/test_docs.py`` renders it in Chromium under exactly
this policy.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

__all__ = [
    "DOCS_CONTENT_SECURITY_POLICY",
    "SWAGGER_UI_FILES",
    "install_api_docs",
    "swagger_ui_dir",
]

#: The Swagger UI files served, by the name they have under ``/api/docs/``.
SWAGGER_UI_FILES: Final = ("swagger-ui-bundle.js", "swagger-ui.css")

DOCS_CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

_HEADERS: Final = {
    "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — API docs</title>
<link rel="icon" href="/web/icon.svg">
<link rel="stylesheet" href="{prefix}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{prefix}/swagger-ui-bundle.js"></script>
<script src="{prefix}/init.js"></script>
</body>
</html>
"""

_INIT: Final = """window.ui = SwaggerUIBundle({{
  url: "{openapi_url}",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
}});
"""


def swagger_ui_dir() -> Path:
    """Where the pinned Swagger UI files are (a wheel's package data, installed as files)."""
    return Path(str(files("fastapi_offline") / "static"))


def install_api_docs(app: FastAPI, *, prefix: str = "/api/docs") -> None:
    """Serve the docs page at ``prefix`` and its files under it."""
    assert app.openapi_url is not None, "the docs need the OpenAPI document"
    directory = swagger_ui_dir()
    page = _PAGE.format(title=app.title, prefix=prefix)
    init = _INIT.format(openapi_url=app.openapi_url)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page, headers=_HEADERS)

    async def initializer(request: Request) -> Response:
        return Response(init, media_type="text/javascript", headers=_HEADERS)

    app.add_route(prefix, docs, methods=["GET"], include_in_schema=False)
    app.add_route(f"{prefix}/init.js", initializer, methods=["GET"], include_in_schema=False)
    for name in SWAGGER_UI_FILES:
        path = directory / name

        async def asset(request: Request, path: Path = path) -> Response:
            return FileResponse(path, headers=_HEADERS)

        app.add_route(f"{prefix}/{name}", asset, methods=["GET"], include_in_schema=False)
