"""Accounts: registration, login, the profile, deletion. E-mails are stored lower-cased."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.errors import (
    DuplicateEmailError,
    InvalidCredentialsError,
    NotFoundError,
    RateLimitedError,
    UserGoneError,
)
from chorus_api.domain.login_limits import LoginLimiter
from chorus_api.domain.passwords import PasswordHasher, check_password_policy
from chorus_api.metrics import LOGIN_FAILURES
from chorus_api.transport.reader import Reader
from chorus_schema.models import Order, User

__all__ = [
    "ExistingAccount",
    "OrderRow",
    "UserWithOrders",
    "authenticate",
    "delete_user",
    "existing_account",
    "get_user",
    "get_user_with_orders",
    "normalize_email",
    "register_user",
    "update_user",
]


def normalize_email(email: str) -> str:
    """The stored form of an address: trimmed and lower-cased (one account per mailbox)."""
    return email.strip().lower()


async def register_user(
    session: AsyncSession, *, hasher: PasswordHasher, email: str, password: str, full_name: str
) -> User:
    """Create and commit an account; :class:`DuplicateEmailError` if the e-mail is taken."""
    email = normalize_email(email)
    check_password_policy(password=password, email=email)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        # Checked before hashing so a duplicate costs a lookup, not 0.1 s of argon2; the
        # unique constraint below still decides races between two concurrent requests.
        raise DuplicateEmailError(email)
    user = User(email=email, full_name=full_name, password_hash=await hasher.hash(password))
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise DuplicateEmailError(email) from exc
    return user


@dataclass(frozen=True, slots=True)
class ExistingAccount:
    """The account an e-mail already belongs to, and whether its welcome mail is still due."""

    user_id: int
    welcome_pending: bool


async def existing_account(session: AsyncSession, *, email: str) -> ExistingAccount | None:
    """Who holds ``email``, for repairing a registration whose job was never enqueued."""
    row = (
        await session.execute(
            select(User.id, User.welcome_sent_at).where(User.email == normalize_email(email))
        )
    ).one_or_none()
    if row is None:
        return None
    return ExistingAccount(user_id=row.id, welcome_pending=row.welcome_sent_at is None)


async def authenticate(
    session: AsyncSession,
    *,
    hasher: PasswordHasher,
    limiter: LoginLimiter,
    email: str,
    password: str,
    address: str,
) -> User:
    """The account ``email``/``password`` log into, within the failed-login limits."""
    email = normalize_email(email)
    try:
        await limiter.check(email=email, address=address)
    except RateLimitedError as exc:
        LOGIN_FAILURES.labels(f"locked_{exc.scope}").inc()
        raise
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        await hasher.verify_unknown_user(password)
        await limiter.record_failure(email=email, address=address)
        LOGIN_FAILURES.labels("unknown_email").inc()
        raise InvalidCredentialsError
    valid, new_hash = await hasher.verify(password, user.password_hash)
    if not valid:
        await limiter.record_failure(email=email, address=address)
        LOGIN_FAILURES.labels("wrong_password").inc()
        raise InvalidCredentialsError
    if new_hash is not None:  # the hashing parameters were raised since this hash was made
        user.password_hash = new_hash
        await session.commit()
    await limiter.reset_account(email=email)
    return user


async def get_user(session: AsyncSession, *, user_id: int) -> User:
    """The account ``user_id``; :class:`UserGoneError` if it no longer exists."""
    user = await session.get(User, user_id)
    if user is None:
        raise UserGoneError(user_id)
    return user


class OrderRow(TypedDict):
    """An order as :func:`get_user_with_orders` reads it."""

    id: int
    item: str
    quantity: int
    amount_cents: int
    status: str
    created_at: datetime


class UserWithOrders(TypedDict):
    """An account and all its orders, newest first."""

    id: int
    email: str
    full_name: str
    created_at: datetime
    orders: list[OrderRow]


# The account and its orders eagerly, in one round trip: a LEFT JOIN (one row per order,
# or one row of NULL order columns) instead of the seed's ``selectinload`` (two queries
# through the ORM). The user's columns repeat on every row — a few hundred bytes per order
# over a local network, cheaper than a second round trip — and ``ix_orders_user_id_id``
# serves the join and the order. Built once, compiled once by the Reader.
_USER_WITH_ORDERS = (
    select(
        User.id,
        User.email,
        User.full_name,
        User.created_at,
        Order.id.label("order_id"),
        Order.item,
        Order.quantity,
        Order.amount_cents,
        Order.status,
        Order.created_at.label("order_created_at"),
    )
    .select_from(User)
    .outerjoin(Order, Order.user_id == User.id)
    .where(User.id == bindparam("user_id"))
    .order_by(Order.id.desc())
)


async def get_user_with_orders(reader: Reader, *, user_id: int) -> UserWithOrders:
    """The account with its orders (newest first); :class:`NotFoundError` if none.

    A read-only request gains nothing from the ORM's identity map, so this runs on the
    :class:`~chorus_api.transport.reader.Reader` (no session; see that module for the trade-off).
    """
    rows = await reader.fetch(_USER_WITH_ORDERS, user_id=user_id)
    if not rows:
        raise NotFoundError(user_id)
    first = rows[0]
    orders: list[OrderRow] = [
        {
            "id": row["order_id"],
            "item": row["item"],
            "quantity": row["quantity"],
            "amount_cents": row["amount_cents"],
            "status": row["status"],
            "created_at": row["order_created_at"],
        }
        for row in rows
        if row["order_id"] is not None
    ]
    return {
        "id": first["id"],
        "email": first["email"],
        "full_name": first["full_name"],
        "created_at": first["created_at"],
        "orders": orders,
    }


async def update_user(
    session: AsyncSession,
    *,
    hasher: PasswordHasher,
    user: User,
    full_name: str | None = None,
    email: str | None = None,
    new_password: str | None = None,
    current_password: str | None = None,
) -> User:
    """Change the profile; credentials (e-mail, password) need the current password."""
    new_email = normalize_email(email) if email is not None else None
    if (new_email is not None and new_email != user.email) or new_password is not None:
        if current_password is None:
            raise InvalidCredentialsError("current_password is required")
        valid, _ = await hasher.verify(current_password, user.password_hash)
        if not valid:
            raise InvalidCredentialsError("current_password is wrong")
    if new_password is not None:
        check_password_policy(password=new_password, email=new_email or user.email)
        user.password_hash = await hasher.hash(new_password)
    if new_email is not None:
        user.email = new_email
    if full_name is not None:
        user.full_name = full_name
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise DuplicateEmailError(new_email) from exc
    return user


async def delete_user(session: AsyncSession, *, user: User) -> None:
    """Delete the account; its orders and notifications go with it (ON DELETE CASCADE)."""
    await session.delete(user)
    await session.commit()
