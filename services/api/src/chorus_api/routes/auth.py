"""``/api/auth``: registration and access tokens."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, HTTPException, Request, Response

from chorus_api.deps import (
    ArqDep,
    ClientDep,
    CredentialsDep,
    OpenSessionDep,
    SettingsDep,
    SignupLimiterDep,
    TokensDep,
)
from chorus_api.domain.devices import COOKIE_NAME, COOKIE_PATH
from chorus_api.domain.errors import InvalidCredentialsError, RateLimitedError, WeakPasswordError
from chorus_api.domain.jobs import (
    enqueue_account_exists_email,
    enqueue_analytics,
    enqueue_welcome_email,
)
from chorus_api.domain.passwords import MAX_PASSWORD_LENGTH
from chorus_api.domain.users import authenticate, normalize_email, register_user
from chorus_api.metrics import SIGNUPS
from chorus_api.routes.errors import too_many_attempts, too_many_signups, weak_password
from chorus_api.routes.openapi import error_responses
from chorus_api.schemas.auth import RegistrationOut, TokenOut
from chorus_api.schemas.fields import Text
from chorus_api.schemas.users import RegisterIn

__all__ = ["router"]

logger = logging.getLogger("chorus.api.auth")

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/register",
    status_code=202,
    responses=error_responses(
        400, 413, 422, 429, 503, s422="weak_password", s429="too_many_signups"
    ),
)
async def register(  # noqa: PLR0917 - FastAPI parameters
    body: RegisterIn,
    open_session: OpenSessionDep,
    credentials: CredentialsDep,
    limiter: SignupLimiterDep,
    arq: ArqDep,
    client: ClientDep,
    background: BackgroundTasks,
) -> RegistrationOut:
    """Create an account — or, if the e-mail already has one, mail its owner instead.

    Both cases answer the same 202 with the same body, after the same work (argon2 runs
    either way), so registering does not reveal which addresses have accounts. A new
    account gets its welcome e-mail (job ``welcome:<id>``, enqueued after the commit);
    an existing one a note that someone tried to sign up with it (at most one an hour) —
    or its welcome e-mail, if an earlier attempt committed the account but never sent it.
    Sign-ups are limited per client address and across the deployment (429
    ``too_many_signups`` with ``Retry-After``).
    """
    try:
        await limiter.admit(address=client.address)
    except RateLimitedError as exc:
        SIGNUPS.labels(f"refused_{exc.scope}").inc()
        logger.info(
            "sign-up refused",
            extra={"limit": exc.scope, "client": client.address, "retry_after": exc.retry_after},
        )
        raise too_many_signups(exc) from None
    try:
        registration = await register_user(
            open_session,
            hasher=credentials.hasher,
            email=body.email,
            password=body.password,
            full_name=body.full_name,
        )
    except WeakPasswordError as exc:
        raise weak_password(exc) from None
    user_id = registration.user_id
    if registration.created:
        SIGNUPS.labels("created").inc()
    else:
        SIGNUPS.labels("existing_email").inc()
    if user_id is not None and registration.welcome_pending:
        await enqueue_welcome_email(arq, user_id=user_id)
    elif user_id is not None:
        await enqueue_account_exists_email(arq, user_id=user_id)
    if registration.created:
        background.add_task(
            enqueue_analytics, arq, event="user.registered", properties={"user_id": user_id}
        )
    return RegistrationOut(email=normalize_email(body.email))


@router.post("/token", responses=error_responses(400, 401, 413, 422, 429, 503))
async def token(
    *,
    username: Annotated[
        Text, Form(min_length=1, max_length=320, description="The account's e-mail address.")
    ],
    password: Annotated[Text, Form(min_length=1, max_length=MAX_PASSWORD_LENGTH)],
    request: Request,
    response: Response,
    open_session: OpenSessionDep,
    credentials: CredentialsDep,
    tokens: TokensDep,
    settings: SettingsDep,
    client: ClientDep,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenOut:
    """Log in with the OAuth2 password flow (form fields ``username`` = e-mail, ``password``).

    Attempts are limited (429 ``too_many_attempts`` with ``Retry-After``): per account and
    address with growing delays, per account from unknown devices, per address. A
    successful login sets the ``chorus_device`` cookie, which makes this client a known
    device of the account: later logins from it are not refused because of guessing
    elsewhere or from the same address.
    """
    try:
        account = await authenticate(
            open_session,
            credentials=credentials,
            email=username,
            password=password,
            client=client,
        )
    except RateLimitedError as exc:
        raise too_many_attempts(exc) from None
    except InvalidCredentialsError:
        raise HTTPException(
            401,
            {"code": "invalid_credentials", "message": "Wrong e-mail or password."},
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    response.set_cookie(
        COOKIE_NAME,
        credentials.devices.issue(account.email),
        max_age=credentials.devices.max_age_seconds,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return TokenOut(
        access_token=tokens.issue(
            account.id, version=account.token_version, name=account.full_name or None
        ),
        expires_in=settings.access_token_ttl_seconds,
    )
