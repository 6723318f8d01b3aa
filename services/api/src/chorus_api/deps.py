"""``Annotated`` dependencies, so route signatures read like prose.

``SessionDep`` is one transactional ``AsyncSession`` per request (never shared across
tasks), admitted to the pool in arrival order (:class:`chorus_api.transport.pool.PoolGate`), for
routes that write; ``ReadSessionDep`` is an autocommit session for routes that
only read (no BEGIN/ROLLBACK round trips, see :mod:`chorus_api.transport.pool`). A route takes one
of the two, never both. ``CurrentUserId``
is the verified token's subject without touching the database; ``CurrentUser`` loads the
account too (401 once it has been deleted). Every dependency is ``async def``: FastAPI
runs plain ``def`` dependencies in a thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_api.domain.errors import UserGoneError
from chorus_api.domain.login_limits import LoginLimiter
from chorus_api.domain.passwords import PasswordHasher
from chorus_api.domain.users import get_user
from chorus_api.resources import Resources
from chorus_api.settings import ApiSettings
from chorus_api.transport.reader import Reader
from chorus_common.events import EventBus
from chorus_common.tokens import InvalidTokenError, TokenService
from chorus_schema.models import User

__all__ = [
    "ArqDep",
    "BusDep",
    "ClientAddress",
    "CurrentUser",
    "CurrentUserId",
    "HasherDep",
    "LimiterDep",
    "ReadSessionDep",
    "ReaderDep",
    "SessionDep",
    "SessionsDep",
    "SettingsDep",
    "TokensDep",
    "authenticated_user_id",
    "oauth2_scheme",
]

TOKEN_URL = "/api/auth/token"  # noqa: S105 - a path, not a password

# auto_error=False: a missing token gets our JSON 401, not FastAPI's default body.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


async def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(_resources)]


async def _session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async with resources.pool_gate.slot(), resources.sessions() as session:
        yield session


async def _read_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async with resources.pool_gate.slot(), resources.read_sessions() as session:
        yield session


async def _sessions(resources: ResourcesDep) -> async_sessionmaker[AsyncSession]:
    return resources.read_sessions


async def _reader(request: Request) -> Reader:
    reader: Reader = request.app.state.resources.reader
    return reader


SessionDep = Annotated[AsyncSession, Depends(_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session)]
#: The read session factory, for work that needs several sessions at once.
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
#: Session-less reads on the pool's asyncpg connections, for hot read-only routes.
ReaderDep = Annotated[Reader, Depends(_reader)]


async def _arq(resources: ResourcesDep) -> ArqRedis:
    return resources.arq


async def _bus(resources: ResourcesDep) -> EventBus:
    return resources.bus


async def _tokens(resources: ResourcesDep) -> TokenService:
    return resources.tokens


async def _hasher(resources: ResourcesDep) -> PasswordHasher:
    return resources.hasher


async def _limiter(resources: ResourcesDep) -> LoginLimiter:
    return resources.login_limiter


async def _settings(resources: ResourcesDep) -> ApiSettings:
    return resources.settings


ArqDep = Annotated[ArqRedis, Depends(_arq)]
BusDep = Annotated[EventBus, Depends(_bus)]
TokensDep = Annotated[TokenService, Depends(_tokens)]
HasherDep = Annotated[PasswordHasher, Depends(_hasher)]
LimiterDep = Annotated[LoginLimiter, Depends(_limiter)]
SettingsDep = Annotated[ApiSettings, Depends(_settings)]


def _unauthorized(code: str, message: str) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail={"code": code, "message": message},
        headers={"WWW-Authenticate": "Bearer"},
    )


def authenticated_user_id(request: Request, token: str | None) -> int:
    """The user id of a verified bearer ``token``; the JSON 401 otherwise.

    Verification is remembered per token (:class:`~chorus_common.tokens.VerifiedTokens`):
    every authenticated request comes through here.
    """
    if token is None:
        raise _unauthorized("not_authenticated", "A bearer token is required.")
    resources: Resources = request.app.state.resources
    try:
        claims = resources.verified_tokens.verify(token)
        return int(claims.subject)
    except (InvalidTokenError, ValueError):
        raise _unauthorized("invalid_token", "The access token is invalid or expired.") from None


async def _current_user_id(
    token: Annotated[str | None, Depends(oauth2_scheme)], request: Request
) -> int:
    # Resources straight from the request, not through ResourcesDep -> TokensDep: two
    # dependency resolutions fewer on every authenticated route.
    return authenticated_user_id(request, token)


CurrentUserId = Annotated[int, Depends(_current_user_id)]


async def _current_user(session: SessionDep, user_id: CurrentUserId) -> User:
    try:
        return await get_user(session, user_id=user_id)
    except UserGoneError:
        raise _unauthorized("invalid_token", "The token's account no longer exists.") from None


#: The account, loaded in the request's transactional session (for routes that change it).
CurrentUser = Annotated[User, Depends(_current_user)]


async def _client_address(request: Request) -> str:
    # uvicorn already replaced the peer with the X-Forwarded-For client when the peer is
    # one of FORWARDED_ALLOW_IPS; an untrusted peer cannot choose its own address here.
    return request.client.host if request.client is not None else "unknown"


ClientAddress = Annotated[str, Depends(_client_address)]
