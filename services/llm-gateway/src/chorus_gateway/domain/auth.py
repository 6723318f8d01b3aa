"""Who is calling: a user (access token), a virtual key, or a service (gateway API key).

All arrive as ``Authorization: Bearer <credential>`` (the ``openai`` SDK's ``api_key``).
A credential shaped like a JWT (three dot-separated parts) is verified as an access
token — signature, claims and revocation, as the api and realtime check it
(``chorus_common.tokens.TokenVerifier``); anything else is looked up among the API keys.
The principal's ``subject`` — ``user:<id>`` or ``key:<name>`` — is what limits and usage
are counted against.

Users may call only the models listed for them (``GATEWAY_USER_MODELS``; ``*`` for all);
any other model is, to them, one that does not exist (404, and ``/v1/models`` does not
list it). A service key may call every model unless its entry lists ``models`` (403).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chorus_common.tokens import InvalidTokenError, TokenVerifier, bearer_token
from chorus_common.virtual_keys import Budget, KeyRecord, is_virtual_key
from chorus_gateway.domain.api_keys import ApiKeys
from chorus_gateway.domain.errors import (
    GatewayError,
    invalid_api_key,
    missing_api_key,
    model_not_allowed,
    model_not_found,
)

if TYPE_CHECKING:
    from chorus_gateway.domain.virtual_keys import KeyResolver

__all__ = ["Authenticator", "Limits", "Principal"]

USER_PREFIX = "user:"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-subject limits; 0 means unlimited."""

    requests_per_minute: int
    tokens_per_minute: int
    concurrent_streams: int


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    subject: str
    user_id: int | None
    limits: Limits
    models: frozenset[str] | None = None
    #: A service key's limits for each end user it calls for (None for a user).
    end_user_limits: Limits | None = None
    #: A virtual key's owner (``user:<id>``/``team:<id>``) and the limits all its keys
    #: and tokens share (the defaults): more keys never mean more capacity.
    owner: str | None = None
    owner_limits: Limits | None = None
    #: Spend budgets every call is reserved against (a virtual key's, its team's, and
    #: the user's own — for their keys and their token alike).
    budgets: tuple[Budget, ...] = ()
    #: The Redis slot (hash tag) of every counter of this caller: a virtual key's owner,
    #: so one script can check the key's limits and every budget that applies.
    slot: str = ""
    key_id: int | None = None
    team_id: int | None = None

    @property
    def tag(self) -> str:
        """The hash tag of this caller's counters."""
        return self.slot or self.subject

    @property
    def is_user(self) -> bool:
        """A person with an access token (not a service key)."""
        return self.subject.startswith(USER_PREFIX)

    def check_model(self, requested: str) -> None:
        """Raise when this caller may not use ``requested``: to a user the model does not
        exist (404), a key is told it is not allowed (403)."""
        if self.models is not None and requested not in self.models:
            if self.is_user:
                raise model_not_found(requested)
            raise model_not_allowed(requested)

    def billed_user(self, end_user: str | None) -> int | None:
        """The user a call's usage belongs to.

        A user token bills its own user, whatever the body says, and a virtual key its
        owner (none for a team's key). A service key (the
        worker answering in a room) acts for someone: OpenAI's ``user`` field names that
        end user, and a numeric one is a Chorus user id — so the assistant's tokens count
        for the person who asked, while limits stay those of the key.
        """
        if self.is_user or self.key_id is not None:
            return self.user_id
        if end_user is not None and end_user.isdigit() and 0 < int(end_user) < 2**63:
            return int(end_user)
        return None


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal` or an OpenAI 401."""

    def __init__(
        self,
        *,
        tokens: TokenVerifier,
        api_keys: ApiKeys,
        defaults: Limits,
        user_models: frozenset[str] | None = None,
        virtual_keys: KeyResolver | None = None,
    ) -> None:
        self._tokens = tokens
        self._keys = api_keys
        self._virtual = virtual_keys
        self._defaults = defaults
        self._user_models = user_models

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind ``authorization``; :class:`GatewayError` (401) otherwise.

        A Redis error propagates (whether a token was revoked cannot be told then).
        """
        credential = bearer_token(authorization)
        if credential is None:
            raise missing_api_key()
        if credential.count(".") == 2:
            return await self._user(credential)
        if self._virtual is not None and is_virtual_key(credential):
            record = await self._virtual.find(credential)
            if record is None:
                raise invalid_api_key(credential, "no such key, or revoked")
            if record.expires_at is not None and record.expires_at <= time.time():
                raise invalid_api_key(credential, "the key has expired")
            return await self._with_user_budget(self._virtual_principal(record))
        key = self._keys.find(credential)
        if key is None:
            raise invalid_api_key(credential)
        d = self._defaults
        limits = Limits(
            requests_per_minute=_pick(key.requests_per_minute, d.requests_per_minute),
            tokens_per_minute=_pick(key.tokens_per_minute, d.tokens_per_minute),
            concurrent_streams=_pick(key.concurrent_streams, d.concurrent_streams),
        )
        # Whom a key calls for gets what a user gets, unless the key says otherwise.
        end_users = Limits(
            requests_per_minute=_pick(key.end_user_requests_per_minute, d.requests_per_minute),
            tokens_per_minute=_pick(key.end_user_tokens_per_minute, d.tokens_per_minute),
            concurrent_streams=_pick(key.end_user_concurrent_streams, d.concurrent_streams),
        )
        return Principal(f"key:{key.name}", None, limits, key.models, end_users)

    def _virtual_principal(self, record: KeyRecord) -> Principal:
        # A key's own limits can only narrow the defaults: its owner set them.
        d = self._defaults
        limits = Limits(
            requests_per_minute=_narrow(record.requests_per_minute, d.requests_per_minute),
            tokens_per_minute=_narrow(record.tokens_per_minute, d.tokens_per_minute),
            concurrent_streams=_narrow(record.concurrent_streams, d.concurrent_streams),
        )
        return Principal(
            f"vkey:{record.id}",
            record.user_id,
            limits,
            frozenset(record.models) if record.models is not None else None,
            budgets=record.budgets,
            slot=record.owner,
            key_id=record.id,
            team_id=record.team_id,
            owner=record.owner,
            owner_limits=d,
        )

    async def _user(self, token: str) -> Principal:
        try:
            claims = await self._tokens.verify(token)
        except InvalidTokenError as exc:
            raise _token_error(token, str(exc)) from None
        user_id = int(claims.subject) if claims.subject.isdigit() else None
        return await self._with_user_budget(
            Principal(f"{USER_PREFIX}{claims.subject}", user_id, self._defaults, self._user_models)
        )

    async def _with_user_budget(self, principal: Principal) -> Principal:
        """``principal`` also held to its user's own budget, if they have one.

        A user's token and their own keys all keep their counters in the slot
        ``user:<id>`` (a team's key has no user: the team's budget applies instead), so the
        budget's spend counter is one key that every such call reserves against.
        """
        if self._virtual is None or principal.user_id is None:
            return principal
        budget = await self._virtual.user_budget(principal.user_id)
        if budget is None:
            return principal
        return dataclasses.replace(principal, budgets=(*principal.budgets, budget))


def _narrow(own: int | None, default: int) -> int:
    """A virtual key's limit: at most the default (0 = unlimited on either side)."""
    if own is None or own == 0:
        return default
    return own if default == 0 else min(own, default)


def _pick(override: int | None, default: int) -> int:
    return default if override is None else override


def _token_error(token: str, reason: str) -> GatewayError:
    return invalid_api_key(token, f"access token rejected: {reason}")
