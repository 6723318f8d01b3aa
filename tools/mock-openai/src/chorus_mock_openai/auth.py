"""The bearer-token check OpenAI applies to every `/v1` request.

Any non-empty key is accepted: the mock checks that clients send one (a proxy
that forgets to forward the key should fail here as it would upstream), not
which one.
"""

from __future__ import annotations

__all__ = ["has_bearer_token"]

_BEARER = b"bearer "


def has_bearer_token(authorization: bytes | None) -> bool:
    """Whether an `Authorization` header value carries a non-empty bearer token."""
    if authorization is None or len(authorization) <= len(_BEARER):
        return False
    return authorization[: len(_BEARER)].lower() == _BEARER and bool(
        authorization[len(_BEARER) :].strip()
    )
