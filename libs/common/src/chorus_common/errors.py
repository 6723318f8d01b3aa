"""The JSON error shape every Chorus HTTP service answers with, and its handlers.

``{"error": {"code": "...", "message": "...", "details": ...}}``: ``code`` is a stable,
machine-readable slug; ``message`` is for humans; ``details`` is optional (validation
errors list the offending fields). Nothing, not even an unexpected exception, escapes as
a plain-text 500 (``request_context`` answers those).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from chorus_common.rooms import DirectoryUnavailableError

__all__ = [
    "ErrorBody",
    "ErrorResponse",
    "error_response",
    "install_error_handlers",
    "status_code_slug",
]

logger = logging.getLogger("chorus.errors")

#: Seconds a client should wait before retrying when a dependency is down.
UNAVAILABLE_RETRY_AFTER = "2"


class ErrorBody(BaseModel):
    """The inside of an error response."""

    code: str
    message: str
    details: Any | None = None


class ErrorResponse(BaseModel):
    """What every non-2xx JSON response looks like (used in OpenAPI ``responses=``)."""

    error: ErrorBody


def status_code_slug(status_code: int) -> str:
    """``404`` → ``not_found``: the default error code for a status."""
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    details: Any | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build the standard error JSON response."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status_code, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Keep only JSON-safe parts: ``ctx`` may hold exception objects, ``input`` may be huge.
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail: Any = exc.detail
    if isinstance(detail, dict) and "code" in detail:
        code, message = str(detail["code"]), str(detail.get("message", ""))
        details = detail.get("details")
    else:
        code, message, details = status_code_slug(exc.status_code), str(detail), None
    return error_response(
        exc.status_code, code, message, details=details, headers=dict(exc.headers or {})
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        422, "validation_error", "The request is invalid.", details=_validation_details(exc)
    )


ExceptionHandler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def _unavailable(what: str, message: str) -> ExceptionHandler:
    """A handler answering 503 ``unavailable`` with ``Retry-After`` (and logging ``what``)."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("%s unavailable: %s", what, exc)
        return error_response(
            503, "unavailable", message, headers={"Retry-After": UNAVAILABLE_RETRY_AFTER}
        )

    return handler


_redis_unavailable = _unavailable("redis", "A backing service is unavailable; retry shortly.")
_rooms_unavailable = _unavailable(
    "room access lists", "Room access cannot be checked right now; retry shortly."
)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, answer in the standard JSON shape."""
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RedisConnectionError, _redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, _redis_unavailable)
    # Nobody can tell who may enter a room: refuse (never guess) and say when to retry.
    app.add_exception_handler(DirectoryUnavailableError, _rooms_unavailable)
    # Unexpected exceptions are answered by RequestContextMiddleware, which sits outside
    # Starlette's exception layer and so can still attach X-Request-ID to the 500.
