"""OpenAPI documentation of error responses: ``responses=error_responses(401, 404)``.

Every documented error status uses :class:`chorus_common.errors.ErrorResponse` with an
example of the codes that route can answer; 429 and 503 document ``Retry-After``. The 422
entry replaces FastAPI's default ``HTTPValidationError`` schema, which is not what the api
answers.
"""

from __future__ import annotations

from typing import Any

from chorus_common.errors import ErrorResponse

__all__ = ["error_responses"]

_DESCRIPTIONS: dict[int, tuple[str, str, str]] = {
    # status: (description, example code, example message)
    400: (
        "The body cannot be parsed (not UTF-8, truncated).",
        "bad_request",
        "There was an error parsing the body",
    ),
    401: (
        "Missing, malformed, forged or expired bearer token (or wrong credentials).",
        "invalid_token",
        "The access token is invalid or expired.",
    ),
    403: ("Not allowed.", "invalid_credentials", "current_password is wrong."),
    404: ("Not found (or not yours: we do not say which).", "not_found", "No such resource."),
    409: ("Conflicts with the current state.", "conflict", "The resource changed."),
    413: (
        "The request body is larger than MAX_BODY_BYTES.",
        "payload_too_large",
        "The request body exceeds 65536 bytes.",
    ),
    422: (
        "The request does not validate; `details` lists the offending fields.",
        "validation_error",
        "The request is invalid.",
    ),
    429: (
        "Too many failed logins for this account or address; see Retry-After.",
        "too_many_attempts",
        "Too many failed logins for this account; retry in 900 seconds.",
    ),
    503: (
        "Postgres or Redis is unavailable; retry after Retry-After seconds.",
        "unavailable",
        "The database is unavailable; retry shortly.",
    ),
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
}


def error_responses(*statuses: int, **codes: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for ``statuses``; ``codes`` override example codes.

    ``error_responses(404, 409, s409="invalid_transition")`` documents both statuses
    with ``invalid_transition`` as the 409 example.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, message = _DESCRIPTIONS[status]
        code = codes.get(f"s{status}", code)
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": description,
            "content": {
                "application/json": {"example": {"error": {"code": code, "message": message}}}
            },
        }
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        responses[status] = entry
    return responses
