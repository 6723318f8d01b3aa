"""``Annotated`` dependencies, so route signatures read like prose.

``SessionDep`` is one transactional ``AsyncSession`` per request (never shared across
tasks), admitted to the pool in arrival order (:class:`chorus_api.transport.pool.PoolGate`), for
routes that write; ``ReadSessionDep`` is an autocommit session for routes that
only read (no BEGIN/ROLLBACK round trips, see :mod:`chorus_api.transport.pool`). A route takes one
of the two, never both. Routes that run argon2 take ``OpenSessionDep`` instead and open
a session only around their queries, so no connection waits on a hash.
``CurrentUserId`` is the subject of a verified, unrevoked token without touching the
database.
``ClientDep`` is where a password attempt comes from (address, device cookie). Every
dependency is ``async def``: FastAPI runs plain ``def`` dependencies in a thread pool, a
thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.credentials import Client, Credentials
from chorus_api.domain.devices import COOKIE_NAME
from chorus_api.domain.key_directory import KeyDirectory
from chorus_api.domain.revocations import Revocations
from chorus_api.domain.rooms import RoomServices
from chorus_api.domain.signup_limits import SignupLimiter
from chorus_api.resources import Resources
from chorus_api.settings import ApiSettings
from chorus_api.transport.pool import SessionFactory
from chorus_api.transport.reader import Reader
from chorus_common.events import EventBus
from chorus_common.tokens import InvalidTokenError, RevokedTokenError, TokenService

__all__ = [
    "ArqDep",
    "BusDep",
    "ClientDep",
    "CredentialsDep",
    "CurrentUserId",
    "KeyDirectoryDep",
    "OpenSessionDep",
    "ReadSessionDep",
    "ReaderDep",
    "RevocationsDep",
    "RoomsDep",
    "SessionDep",
    "SettingsDep",
    "SignupLimiterDep",
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


async def _open_session(resources: ResourcesDep) -> SessionFactory:
    return resources.open_session


async def _reader(request: Request) -> Reader:
    reader: Reader = request.app.state.resources.reader
    return reader


SessionDep = Annotated[AsyncSession, Depends(_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session)]
#: Session-less reads on the pool's asyncpg connections, for hot read-only routes.
ReaderDep = Annotated[Reader, Depends(_reader)]
#: Opens an admitted transactional session when the route needs it (after argon2).
OpenSessionDep = Annotated[SessionFactory, Depends(_open_session)]


async def _arq(resources: ResourcesDep) -> ArqRedis:
    return resources.arq


async def _bus(resources: ResourcesDep) -> EventBus:
    return resources.bus


async def _tokens(resources: ResourcesDep) -> TokenService:
    return resources.tokens


async def _credentials(resources: ResourcesDep) -> Credentials:
    return resources.credentials


async def _signup_limiter(resources: ResourcesDep) -> SignupLimiter:
    return resources.signup_limiter


async def _revocations(resources: ResourcesDep) -> Revocations:
    return resources.revocations


async def _key_directory(resources: ResourcesDep) -> KeyDirectory:
    return resources.key_directory


async def _settings(resources: ResourcesDep) -> ApiSettings:
    return resources.settings


async def _rooms(resources: ResourcesDep) -> RoomServices:
    return resources.rooms


ArqDep = Annotated[ArqRedis, Depends(_arq)]
BusDep = Annotated[EventBus, Depends(_bus)]
TokensDep = Annotated[TokenService, Depends(_tokens)]
CredentialsDep = Annotated[Credentials, Depends(_credentials)]
SignupLimiterDep = Annotated[SignupLimiter, Depends(_signup_limiter)]
RevocationsDep = Annotated[Revocations, Depends(_revocations)]
SettingsDep = Annotated[ApiSettings, Depends(_settings)]
#: Room changes: the access lists in Redis, the bus, the queue, quotas and limits.
RoomsDep = Annotated[RoomServices, Depends(_rooms)]
KeyDirectoryDep = Annotated[KeyDirectory, Depends(_key_directory)]


def _unauthorized(code: str, message: str) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail={"code": code, "message": message},
        headers={"WWW-Authenticate": "Bearer"},
    )


async def authenticated_user_id(request: Request, token: str | None) -> int:
    """The user id of a verified, unrevoked bearer ``token``; the JSON 401 otherwise.

    Verification is remembered per token and the account's token version for
    ``TOKEN_VERSION_CACHE_SECONDS`` (:class:`~chorus_common.tokens.TokenVerifier`): every
    authenticated request comes through here. Redis unreachable → 503 (the common error
    handlers): whether the token was revoked cannot be told then, and we do not guess.
    """
    if token is None:
        raise _unauthorized("not_authenticated", "A bearer token is required.")
    resources: Resources = request.app.state.resources
    try:
        claims = await resources.token_verifier.verify(token)
        return int(claims.subject)
    except RevokedTokenError:
        raise _unauthorized(
            "invalid_token",
            "The access token was revoked (password changed or account deleted); log in again.",
        ) from None
    except (InvalidTokenError, ValueError):
        raise _unauthorized("invalid_token", "The access token is invalid or expired.") from None


async def _current_user_id(
    token: Annotated[str | None, Depends(oauth2_scheme)], request: Request
) -> int:
    # Resources straight from the request, not through ResourcesDep -> TokensDep: two
    # dependency resolutions fewer on every authenticated route.
    return await authenticated_user_id(request, token)


CurrentUserId = Annotated[int, Depends(_current_user_id)]


async def _client(request: Request) -> Client:
    # uvicorn already replaced the peer with the X-Forwarded-For client when the peer is
    # one of FORWARDED_ALLOW_IPS; an untrusted peer cannot choose its own address here.
    address = request.client.host if request.client is not None else "unknown"
    return Client(address=address, device_cookie=request.cookies.get(COOKIE_NAME))


#: Where a password attempt comes from: the client address and its device cookie.
ClientDep = Annotated[Client, Depends(_client)]
