"""``/api/users``: the current account, and an account with its orders.

``GET /api/users/{id}`` is the api's hottest read. FastAPI's per-request machinery
(dependency resolution, its route wrappers) cost more CPU than the query itself
(``bench/api_users.py``, py-spy), so :data:`fast_routes` serves the common case — a GET
with a plain in-range id — through a bare Starlette route placed ahead of the routers
(:func:`chorus_api.main.create_app`). It runs the same code (``oauth2_scheme``,
:func:`~chorus_api.deps.authenticated_user_id`, :func:`_user_with_orders`) under the same
middleware, exception handlers and metric label; every other request (a malformed or
out-of-range id → FastAPI's 422, HEAD) falls through to :func:`read_user`, which also
documents the operation in the OpenAPI schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Request, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from chorus_api.deps import (
    ClientDep,
    CredentialsDep,
    CurrentUserId,
    OpenSessionDep,
    ReaderDep,
    ReadSessionDep,
    RevocationsDep,
    authenticated_user_id,
    oauth2_scheme,
)
from chorus_api.domain.errors import (
    DuplicateEmailError,
    InvalidCredentialsError,
    NotFoundError,
    RateLimitedError,
    UserGoneError,
    WeakPasswordError,
)
from chorus_api.domain.users import (
    ProfileChanges,
    delete_user,
    get_user,
    get_user_with_orders,
    public_profile,
    update_user,
)
from chorus_api.routes.errors import account_gone, too_many_attempts, weak_password
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.fields import BIGINT_MAX
from chorus_api.schemas.rooms import ProfileOut
from chorus_api.schemas.users import AccountDeleteIn, UserOut, UserUpdateIn, UserWithOrdersOut
from chorus_api.transport.reader import Reader

__all__ = ["fast_routes", "router"]

router = APIRouter(prefix="/api/users", tags=["users"])


@contextlib.contextmanager
def _password_checked() -> Iterator[None]:
    """What a route that checks the account's password answers: 401, 429 or 403."""
    try:
        yield
    except UserGoneError:
        raise account_gone() from None
    except RateLimitedError as exc:
        raise too_many_attempts(exc) from None
    except InvalidCredentialsError as exc:
        raise HTTPException(403, {"code": "invalid_credentials", "message": str(exc)}) from None


@router.get("/me", responses=error_responses(401, 503))
async def read_me(user_id: CurrentUserId, session: ReadSessionDep) -> UserOut:
    """The account the token belongs to."""
    try:
        user = await get_user(session, user_id=user_id)
    except UserGoneError:
        raise account_gone() from None
    return UserOut.model_validate(user)


@router.patch(
    "/me",
    responses=error_responses(
        400, 401, 403, 409, 413, 422, 429, 503, s409="email_taken", s403="invalid_credentials"
    ),
)
async def update_me(  # noqa: PLR0917 - FastAPI parameters
    body: UserUpdateIn,
    user_id: CurrentUserId,
    open_session: OpenSessionDep,
    credentials: CredentialsDep,
    revocations: RevocationsDep,
    client: ClientDep,
) -> UserOut:
    """Change the name, e-mail or password; the last two need ``current_password`` (403).

    Password checks are limited like logins (429 ``too_many_attempts``). A new password
    revokes every token of the account — this one too: log in again with it.
    """
    try:
        with _password_checked():
            updated = await update_user(
                open_session,
                credentials=credentials,
                revocations=revocations,
                user_id=user_id,
                changes=ProfileChanges(
                    full_name=body.full_name,
                    email=body.email,
                    password=body.password,
                    current_password=body.current_password,
                ),
                client=client,
            )
    except WeakPasswordError as exc:
        raise weak_password(exc) from None
    except DuplicateEmailError:
        raise HTTPException(
            409, {"code": "email_taken", "message": "An account with this e-mail already exists."}
        ) from None
    return UserOut.model_validate(updated)


@router.delete(
    "/me",
    status_code=204,
    responses=error_responses(400, 401, 403, 413, 422, 429, 503, s403="invalid_credentials"),
)
async def delete_me(  # noqa: PLR0917 - FastAPI parameters
    body: AccountDeleteIn,
    user_id: CurrentUserId,
    open_session: OpenSessionDep,
    credentials: CredentialsDep,
    revocations: RevocationsDep,
    client: ClientDep,
) -> Response:
    """Delete the account with its orders and notifications; its password confirms it.

    Every token of the account stops working, in every service. The password check is
    limited like a login (429 ``too_many_attempts``).
    """
    with _password_checked():
        await delete_user(
            open_session,
            credentials=credentials,
            revocations=revocations,
            user_id=user_id,
            password=body.current_password,
            client=client,
        )
    return Response(status_code=204)


@router.get(
    "/{user_id}",
    response_model=UserWithOrdersOut,
    responses=error_responses(401, 404, 422, 503),
)
async def read_user(
    user_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)],
    current_user_id: CurrentUserId,
    reader: ReaderDep,
) -> Response:
    """An account with all its orders (newest first); only your own — others are 404.

    Identity comes from the token, never from the path: asking for another account's id
    answers 404, exactly as for an id that does not exist, so ids cannot be probed.
    """
    return await _user_with_orders(reader, user_id=user_id, current_user_id=current_user_id)


@router.get("/{user_id}/profile", responses=error_responses(401, 404, 422, 503))
async def read_profile(
    user_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)],
    _current_user_id: CurrentUserId,
    session: ReadSessionDep,
) -> ProfileOut:
    """Anyone's public profile: the id and display name (the account's name) — no e-mail.

    What rooms show next to what someone says; any signed-in user may ask.
    """
    try:
        found, name = await public_profile(session, user_id=user_id)
    except NotFoundError:
        raise HTTPException(404, {"code": "not_found", "message": "No such user."}) from None
    return ProfileOut(id=found, display_name=name)


async def _user_with_orders(reader: Reader, *, user_id: int, current_user_id: int) -> Response:
    if user_id != current_user_id:
        raise HTTPException(404, {"code": "not_found", "message": "No such user."})
    try:
        user = await get_user_with_orders(reader, user_id=user_id)
    except NotFoundError:
        raise HTTPException(404, {"code": "not_found", "message": "No such user."}) from None
    # The rows are already the document (typed by ``UserWithOrders``, constrained by the
    # schema): orjson writes the bytes pydantic would (UTC as ``Z``, compact), without
    # building and validating a model per order on the api's hottest route.
    return Response(orjson.dumps(user, option=orjson.OPT_UTC_Z), media_type="application/json")


async def _read_user_fast(request: Request) -> Response:
    """:func:`read_user` for a GET whose id :class:`_PlainIdRoute` has already checked."""
    current_user_id = await authenticated_user_id(request, await oauth2_scheme(request))
    reader: Reader = request.app.state.resources.reader
    user_id: int = request.path_params["user_id"]
    return await _user_with_orders(reader, user_id=user_id, current_user_id=current_user_id)


class _PlainIdRoute(Route):
    """Matches only GETs whose ``{user_id}`` is ASCII digits within the ``Id`` range.

    Anything else is no match at all, so FastAPI's route answers it exactly as before.
    The matched scope carries this route, whose ``path`` is the FastAPI route's template:
    the HTTP metrics label the request the same.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        match, child_scope = super().matches(scope)
        if match is not Match.FULL:
            return Match.NONE, {}
        raw: str = child_scope["path_params"]["user_id"]
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= BIGINT_MAX):
            return Match.NONE, {}
        child_scope["path_params"]["user_id"] = int(raw)
        child_scope["route"] = self
        return match, child_scope


#: Routes to mount ahead of the routers (they only take requests the routers would
#: answer the same way).
fast_routes: list[Route] = [
    _PlainIdRoute(
        f"{router.prefix}/{{user_id}}",
        _read_user_fast,
        methods=["GET"],
        name="read_user_fast",
        include_in_schema=False,
    )
]
