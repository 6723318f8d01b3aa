"""Error handlers: OpenAI's error shape on ``/v1``, Chorus's everywhere else.

Domain errors (:class:`GatewayError`) raised in FastAPI routes, unknown ``/v1`` URLs
(OpenAI's ``Invalid URL (METHOD /path)``), wrong methods and validation errors under
``/v1`` all answer ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from chorus_common.errors import error_response, status_code_slug
from chorus_gateway.domain.errors import GatewayError, invalid_request, route_not_found

__all__ = ["install_openai_errors"]

OPENAI_PREFIX = "/v1"


def _openai(request: Request) -> bool:
    path = request.url.path
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def _respond(error: GatewayError, *, openai: bool) -> Response:
    body = error.body() if openai else error.chorus_body()
    return Response(
        body, status_code=error.status, headers=error.headers, media_type="application/json"
    )


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _respond(exc, openai=_openai(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _openai(request):
        return error_response(
            exc.status_code,
            status_code_slug(exc.status_code),
            str(exc.detail),
            headers=dict(exc.headers or {}),
        )
    if exc.status_code == 404:
        error = route_not_found(request.method, request.url.path)
    elif exc.status_code == 405:
        error = GatewayError(
            405,
            f"Invalid method for URL ({request.method} {request.url.path})",
            error_type="invalid_request_error",
            headers=dict(exc.headers or {}),
        )
    else:
        error = GatewayError(exc.status_code, str(exc.detail), error_type="invalid_request_error")
    return _respond(error, openai=True)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    error = invalid_request(f"Invalid request: {where}: {first.get('msg', 'invalid')}")
    if not _openai(request):
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return error_response(422, "validation_error", "The request is invalid.", details=details)
    return _respond(error, openai=True)


def install_openai_errors(app: FastAPI) -> None:
    """Install the handlers (after ``create_service_app`` installed the common ones)."""
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
