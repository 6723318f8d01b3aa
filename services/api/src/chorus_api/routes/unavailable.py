"""Postgres unreachable → 503 ``unavailable`` with ``Retry-After``, never a 500.

While Postgres is down, restarting or failing over, requests fail in several ways
depending on when they meet it: the pool cannot connect (``OSError``: refused, reset,
timed out), a pooled connection dies mid-query (``InterfaceError``, an invalidated
connection), the server says it is shutting down or starting (``OperationalError`` around
asyncpg's ``OperatorInterventionError``), or every pooled connection is busy past
``DB_POOL_TIMEOUT`` (SQLAlchemy's ``TimeoutError``). All mean "retry shortly" to a client.
The pool replaces dead connections (pre-ping), so once Postgres is back requests are
served again without a restart. Any other database error is a bug and stays a 500.
"""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from chorus_common.errors import UNAVAILABLE_RETRY_AFTER, error_response

__all__ = ["install_unavailable_handlers", "is_database_unavailable"]

logger = logging.getLogger("chorus.api.unavailable")

_CONNECTION_ERRORS = (
    OSError,  # includes ConnectionError and TimeoutError
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def is_database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means Postgres cannot be reached right now."""
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc.orig, _CONNECTION_ERRORS)
    return isinstance(exc, _CONNECTION_ERRORS)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_unavailable(exc):
        raise exc
    logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return error_response(
        503,
        "unavailable",
        "The database is unavailable; retry shortly.",
        headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
    )


def install_unavailable_handlers(app: FastAPI) -> None:
    """Answer database outages with 503 on every route."""
    for exc_class in (sa_exc.DBAPIError, sa_exc.TimeoutError, *_CONNECTION_ERRORS):
        app.add_exception_handler(exc_class, _unavailable)
