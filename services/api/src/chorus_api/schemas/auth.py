"""Registration answers and access tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

REGISTRATION_MESSAGE = (
    "If this address was new, its account is ready: log in with your password. "
    "If it already had an account, we sent its owner an e-mail instead."
)

__all__ = ["RegistrationOut", "TokenOut"]


class RegistrationOut(BaseModel):
    """A registration was accepted: the same answer whether the address was new or not."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "status": "accepted",
                    "message": REGISTRATION_MESSAGE,
                }
            ]
        }
    )

    #: The address as stored (trimmed, lower-cased).
    email: str
    status: Literal["accepted"] = "accepted"
    message: str = REGISTRATION_MESSAGE


class TokenOut(BaseModel):
    """An OAuth2 bearer token (RFC 6749 §5.1)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIs…",
                    "token_type": "bearer",
                    "expires_in": 3600,
                }
            ]
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
