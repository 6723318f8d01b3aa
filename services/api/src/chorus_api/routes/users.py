"""``/api/users``: the current account, and an account with its orders."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Response

from chorus_api.deps import (
    CurrentUser,
    CurrentUserId,
    HasherDep,
    ReaderDep,
    ReadSessionDep,
    SessionDep,
)
from chorus_api.domain.errors import (
    DuplicateEmailError,
    InvalidCredentialsError,
    NotFoundError,
    UserGoneError,
    WeakPasswordError,
)
from chorus_api.domain.users import delete_user, get_user, get_user_with_orders, update_user
from chorus_api.openapi import error_responses
from chorus_api.schemas.fields import BIGINT_MAX
from chorus_api.schemas.users import UserOut, UserUpdateIn, UserWithOrdersOut

__all__ = ["router"]

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("/me", responses=error_responses(401, 503))
async def read_me(user_id: CurrentUserId, session: ReadSessionDep) -> UserOut:
    """The account the token belongs to."""
    try:
        user = await get_user(session, user_id=user_id)
    except UserGoneError:
        raise HTTPException(
            401,
            {"code": "invalid_token", "message": "The token's account no longer exists."},
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    return UserOut.model_validate(user)


@router.patch(
    "/me",
    responses=error_responses(
        400, 401, 403, 409, 413, 422, 503, s409="email_taken", s403="invalid_credentials"
    ),
)
async def update_me(
    body: UserUpdateIn, user: CurrentUser, session: SessionDep, hasher: HasherDep
) -> UserOut:
    """Change the name, e-mail or password; the last two need ``current_password`` (403)."""
    try:
        updated = await update_user(
            session,
            hasher=hasher,
            user=user,
            full_name=body.full_name,
            email=body.email,
            new_password=body.password,
            current_password=body.current_password,
        )
    except InvalidCredentialsError as exc:
        raise HTTPException(403, {"code": "invalid_credentials", "message": str(exc)}) from None
    except WeakPasswordError as exc:
        raise HTTPException(
            422,
            {
                "code": "weak_password",
                "message": "The password is too weak.",
                "details": exc.reasons,
            },
        ) from None
    except DuplicateEmailError:
        raise HTTPException(
            409, {"code": "email_taken", "message": "An account with this e-mail already exists."}
        ) from None
    return UserOut.model_validate(updated)


@router.delete("/me", status_code=204, responses=error_responses(401, 503))
async def delete_me(user: CurrentUser, session: SessionDep) -> Response:
    """Delete the account with its orders and notifications. Its tokens stop working."""
    await delete_user(session, user=user)
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
