"""Users: registration, the profile and its changes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from chorus_api.domain.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from chorus_api.schemas.fields import Text
from chorus_api.schemas.orders import OrderOut

__all__ = ["AccountDeleteIn", "RegisterIn", "UserOut", "UserUpdateIn", "UserWithOrdersOut"]

#: RFC 5321's limit for a forward path; the ``users.email`` column is as long.
Email = Annotated[EmailStr, Field(max_length=320)]
Password = Annotated[
    Text,
    Field(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description=(
            "At least 10 characters mixing at least two of: lower-case letters, upper-case "
            "letters, digits, symbols; not the e-mail address."
        ),
    ),
]
FullName = Annotated[Text, Field(min_length=1, max_length=200)]
CurrentPassword = Annotated[Text, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]


class RegisterIn(BaseModel):
    """A new account."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "Analytical-Engine-1843",
                    "full_name": "Ada Lovelace",
                }
            ]
        },
    )

    email: Email
    password: Password
    full_name: FullName


class UserUpdateIn(BaseModel):
    """Profile changes; changing the e-mail or the password needs ``current_password``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"full_name": "Augusta Ada King"}]},
    )

    full_name: FullName | None = None
    email: Email | None = None
    password: Password | None = None
    current_password: CurrentPassword | None = None


class AccountDeleteIn(BaseModel):
    """Deleting the account needs its password (a stolen token alone cannot do it)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"current_password": "Analytical-Engine-1843"}]},
    )

    current_password: CurrentPassword


class UserOut(BaseModel):
    """An account as its owner sees it (never the password hash)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "email": "ada@example.com",
                    "full_name": "Ada Lovelace",
                    "created_at": "2026-11-28T04:30:00.123456Z",
                }
            ]
        },
    )

    id: int
    email: str
    full_name: str
    created_at: datetime


class UserWithOrdersOut(UserOut):
    """An account with all its orders, newest first."""

    orders: list[OrderOut]
