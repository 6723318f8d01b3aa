"""``/api/auth``: registration and access tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, HTTPException

from chorus_api.deps import (
    ArqDep,
    ClientAddress,
    HasherDep,
    LimiterDep,
    SessionDep,
    SettingsDep,
    TokensDep,
)
from chorus_api.domain.errors import (
    DuplicateEmailError,
    InvalidCredentialsError,
    RateLimitedError,
    WeakPasswordError,
)
from chorus_api.domain.jobs import enqueue_analytics, enqueue_welcome_email
from chorus_api.domain.passwords import MAX_PASSWORD_LENGTH
from chorus_api.domain.users import authenticate, existing_account, register_user
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.auth import TokenOut
from chorus_api.schemas.fields import Text
from chorus_api.schemas.users import RegisterIn, UserOut

__all__ = ["router"]

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/register",
    status_code=201,
    responses=error_responses(400, 409, 413, 422, 503, s409="email_taken", s422="weak_password"),
)
async def register(
    body: RegisterIn,
    session: SessionDep,
    hasher: HasherDep,
    arq: ArqDep,
    background: BackgroundTasks,
) -> UserOut:
    """Create an account; its welcome e-mail is sent in the background.

    The welcome job (``welcome:<id>``, see ``GET /api/jobs/{id}``) is enqueued only after
    the account is committed. A retried registration whose first response was lost gets
    409 — and if that first attempt died before enqueueing, the retry enqueues the mail
    it missed (arq's job-id dedup keeps it to one job either way).
    """
    try:
        user = await register_user(
            session,
            hasher=hasher,
            email=body.email,
            password=body.password,
            full_name=body.full_name,
        )
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
        account = await existing_account(session, email=body.email)
        if account is not None and account.welcome_pending:
            await enqueue_welcome_email(arq, user_id=account.user_id)
        raise HTTPException(
            409, {"code": "email_taken", "message": "An account with this e-mail already exists."}
        ) from None
    await enqueue_welcome_email(arq, user_id=user.id)
    background.add_task(
        enqueue_analytics, arq, event="user.registered", properties={"user_id": user.id}
    )
    return UserOut.model_validate(user)


@router.post("/token", responses=error_responses(400, 401, 413, 422, 429, 503))
async def token(
    *,
    username: Annotated[
        Text, Form(min_length=1, max_length=320, description="The account's e-mail address.")
    ],
    password: Annotated[Text, Form(min_length=1, max_length=MAX_PASSWORD_LENGTH)],
    session: SessionDep,
    hasher: HasherDep,
    limiter: LimiterDep,
    tokens: TokensDep,
    settings: SettingsDep,
    address: ClientAddress,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenOut:
    """Log in with the OAuth2 password flow (form fields ``username`` = e-mail, ``password``).

    Failed logins are limited per account and per client address: past the limit the
    answer is 429 with ``Retry-After`` until the window ends.
    """
    try:
        user = await authenticate(
            session,
            hasher=hasher,
            limiter=limiter,
            email=username,
            password=password,
            address=address,
        )
    except RateLimitedError as exc:
        raise HTTPException(
            429,
            {
                "code": "too_many_attempts",
                "message": f"Too many failed logins for this {exc.scope}; "
                f"retry in {exc.retry_after} seconds.",
            },
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    except InvalidCredentialsError:
        raise HTTPException(
            401,
            {"code": "invalid_credentials", "message": "Wrong e-mail or password."},
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    return TokenOut(
        access_token=tokens.issue(user.id),
        expires_in=settings.access_token_ttl_seconds,
    )
