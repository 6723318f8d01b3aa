"""Accounts: registration, login, the profile, deletion. E-mails are stored lower-cased.

Every function that runs argon2 takes a :data:`~chorus_api.transport.pool.SessionFactory` rather
than a session and opens one only around its queries: a hash costs ~0.1 s of a core (and
waits behind the others when many arrive), and a database connection held meanwhile is
one the rest of the api cannot have — a burst of sign-ups would empty the pool.

Changing the password or deleting the account revokes every token issued before
(:mod:`chorus_api.domain.revocations`), in the transaction of the change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.domain.credentials import Client, Credentials, StoredAccount
from chorus_api.domain.errors import (
    DuplicateEmailError,
    InvalidCredentialsError,
    NotFoundError,
    UserGoneError,
)
from chorus_api.domain.passwords import PasswordHasher, check_password_policy
from chorus_api.domain.revocations import Revocations, record_revocation
from chorus_api.metrics import TOKEN_REVOCATIONS
from chorus_api.transport.pool import SessionFactory
from chorus_api.transport.reader import Reader
from chorus_common.tokens import ACCOUNT_DELETED
from chorus_schema.models import Order, User

__all__ = [
    "OrderRow",
    "ProfileChanges",
    "Registration",
    "UserWithOrders",
    "authenticate",
    "delete_user",
    "get_user",
    "get_user_with_orders",
    "normalize_email",
    "public_profile",
    "register_user",
    "update_user",
]


logger = logging.getLogger("chorus.api.users")


def normalize_email(email: str) -> str:
    """The stored form of an address: trimmed and lower-cased (one account per mailbox)."""
    return email.strip().lower()


@dataclass(frozen=True, slots=True)
class Registration:
    """What a registration did: created an account, or met an existing one."""

    #: The account that now has the address (None: it was deleted in between).
    user_id: int | None
    created: bool
    #: The account's welcome mail has not gone out (new, or an earlier attempt lost it).
    welcome_pending: bool


async def register_user(
    open_session: SessionFactory,
    *,
    hasher: PasswordHasher,
    email: str,
    password: str,
    full_name: str,
) -> Registration:
    """Create and commit an account, unless the e-mail has one — the caller answers alike.

    The password is hashed first, whether the e-mail is new or not: both answers take the
    same time (argon2 dominates), and no connection is held while it runs.
    """
    email = normalize_email(email)
    check_password_policy(password=password, email=email)
    password_hash = await hasher.hash(password)
    async with open_session() as session:
        user_id = await session.scalar(
            insert(User)
            .values(email=email, full_name=full_name, password_hash=password_hash)
            .on_conflict_do_nothing(index_elements=[User.email])
            .returning(User.id)
        )
        if user_id is not None:
            await session.commit()
            return Registration(user_id, created=True, welcome_pending=True)
        row = (
            await session.execute(select(User.id, User.welcome_sent_at).where(User.email == email))
        ).one_or_none()
        await session.commit()
    if row is None:
        return Registration(None, created=False, welcome_pending=False)
    return Registration(row.id, created=False, welcome_pending=row.welcome_sent_at is None)


async def authenticate(
    open_session: SessionFactory,
    *,
    credentials: Credentials,
    email: str,
    password: str,
    client: Client,
) -> StoredAccount:
    """The account ``email``/``password`` log into, within the login limits."""
    email = normalize_email(email)

    async def load() -> StoredAccount | None:
        async with open_session() as session:
            row = (
                await session.execute(
                    select(
                        User.id, User.email, User.password_hash, User.token_version, User.full_name
                    ).where(User.email == email)
                )
            ).one_or_none()
        if row is None:
            return None
        return StoredAccount(row.id, row.email, row.password_hash, row.token_version, row.full_name)

    account, new_hash = await credentials.check(
        email=email, password=password, client=client, load=load
    )
    if new_hash is not None:  # the hashing parameters were raised since this hash was made
        async with open_session() as session:
            await session.execute(
                update(User)
                .where(User.id == account.id, User.password_hash == account.password_hash)
                .values(password_hash=new_hash)
            )
            await session.commit()
    return account


async def public_profile(session: AsyncSession, *, user_id: int) -> tuple[int, str]:
    """What anyone signed in may know of an account: its id and display name (never the
    e-mail address); :class:`NotFoundError` if there is no such account."""
    name = await session.scalar(select(User.full_name).where(User.id == user_id))
    if name is None:
        raise NotFoundError(user_id)
    return user_id, name


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
# or one row of NULL order columns) instead of ORM loading with ``selectinload`` (two queries
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


@dataclass(frozen=True, slots=True)
class ProfileChanges:
    """What a profile update asks for (None: leave as is)."""

    full_name: str | None = None
    email: str | None = None
    password: str | None = None
    current_password: str | None = None


async def _check_current_password(
    credentials: Credentials, user: User, password: str | None, client: Client
) -> StoredAccount:
    """The account as read, if ``password`` is its password (throttled like a login)."""
    stored = StoredAccount(user.id, user.email, user.password_hash, user.token_version)
    if password is None:
        raise InvalidCredentialsError("current_password is required")

    async def load() -> StoredAccount:
        return stored

    try:
        await credentials.check(email=user.email, password=password, client=client, load=load)
    except InvalidCredentialsError:
        raise InvalidCredentialsError("current_password is wrong") from None
    return stored


async def update_user(
    open_session: SessionFactory,
    *,
    credentials: Credentials,
    revocations: Revocations,
    user_id: int,
    changes: ProfileChanges,
    client: Client,
) -> User:
    """Change the profile; credentials (e-mail, password) need the current password.

    A new password revokes every token issued before, this request's included.
    """
    async with open_session() as session:
        user = await get_user(session, user_id=user_id)
    new_email = normalize_email(changes.email) if changes.email is not None else None
    sensitive = (new_email is not None and new_email != user.email) or changes.password is not None
    checked: StoredAccount | None = None
    new_hash: str | None = None
    if sensitive:
        if changes.password is not None:
            check_password_policy(password=changes.password, email=new_email or user.email)
        checked = await _check_current_password(credentials, user, changes.current_password, client)
        if changes.password is not None:
            new_hash = await credentials.hasher.hash(changes.password)
    async with open_session() as session:
        locked = await session.get(User, user_id, with_for_update=True)
        if locked is None:
            raise UserGoneError(user_id)
        user = locked
        if checked is not None and user.password_hash != checked.password_hash:
            await session.rollback()
            raise InvalidCredentialsError("the password changed meanwhile; try again")
        if new_hash is not None:
            user.password_hash = new_hash
            user.token_version += 1
            await record_revocation(session, user_id=user_id, min_version=user.token_version)
        if new_email is not None:
            user.email = new_email
        if changes.full_name is not None:
            user.full_name = changes.full_name
        try:
            await session.commit()
        except IntegrityError as exc:
            await session.rollback()
            raise DuplicateEmailError(new_email) from exc
    if new_hash is not None:
        TOKEN_REVOCATIONS.labels("password_changed").inc()
        logger.info(
            "tokens revoked: password changed",
            extra={"user_id": user_id, "min_version": user.token_version},
        )
        await revocations.publish(user_id, user.token_version)
    return user


async def delete_user(
    open_session: SessionFactory,
    *,
    credentials: Credentials,
    revocations: Revocations,
    user_id: int,
    password: str,
    client: Client,
) -> None:
    """Delete the account (its password confirms it) and revoke every token of it.

    Its orders and notifications go with it (ON DELETE CASCADE); its room messages stay,
    without an author id.
    """
    async with open_session() as session:
        user = await get_user(session, user_id=user_id)
    await _check_current_password(credentials, user, password, client)
    async with open_session() as session:
        deleted = await session.scalar(delete(User).where(User.id == user_id).returning(User.id))
        if deleted is None:
            raise UserGoneError(user_id)
        await record_revocation(session, user_id=user_id, min_version=ACCOUNT_DELETED)
        await session.commit()
    TOKEN_REVOCATIONS.labels("account_deleted").inc()
    logger.info("tokens revoked: account deleted", extra={"user_id": user_id})
    await revocations.publish(user_id, ACCOUNT_DELETED)
