"""405 answers whose ``Allow`` header lists every method of the path (RFC 9110 §15.5.6).

FastAPI registers one route per method, and the router answers a wrong method with the
``Allow`` of the first route whose path matched — so ``PUT /api/users/me`` would say
``Allow: GET`` although PATCH and DELETE exist too. This handler lists the methods of
every operation documented at that path template instead.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from chorus_common.errors import error_response

__all__ = ["install_method_not_allowed_handler"]


def _allowed_methods(app: FastAPI, template: str) -> list[str]:
    operations = app.openapi().get("paths", {}).get(template, {})
    methods = {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    template = getattr(request.scope.get("route"), "path", None)
    if isinstance(template, str):
        methods = _allowed_methods(request.app, template)
        if methods:
            headers["Allow"] = ", ".join(methods)
    return error_response(405, "method_not_allowed", "Method Not Allowed", headers=headers)


def install_method_not_allowed_handler(app: FastAPI) -> None:
    """Answer 405 with the complete ``Allow`` header."""
    app.add_exception_handler(405, _method_not_allowed)
