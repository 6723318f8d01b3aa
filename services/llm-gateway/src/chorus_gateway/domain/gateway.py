"""The gateway's domain facade: admit a request, then stream or complete it.

Routes call :meth:`Gateway.prepare` (authenticate, validate, resolve the model, admit
against the limits) and then run a :class:`StreamRelay` or a :class:`Completion` built
by :meth:`Gateway.relay` / :meth:`Gateway.completion`. Everything a request needs —
catalogue, provider pool, limiter, usage recorder — lives here, built once by the app's
lifespan.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from chorus_gateway.domain.auth import Authenticator, Principal
from chorus_gateway.domain.call import Accounting, Call
from chorus_gateway.domain.chat_request import ChatRequest
from chorus_gateway.domain.completion import Completion
from chorus_gateway.domain.errors import model_not_found
from chorus_gateway.domain.limits import Admission, Limiter, RateLimited
from chorus_gateway.domain.pricing import worst_case_micros
from chorus_gateway.domain.providers import Catalog
from chorus_gateway.domain.relay import ClientStream, StreamRelay
from chorus_gateway.domain.routing import ProviderPool
from chorus_gateway.metrics import RATELIMIT_REJECTIONS
from chorus_gateway.transport.sse import StreamScanner

__all__ = ["Gateway", "GatewayOptions"]


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """Per-request knobs from the settings."""

    default_max_tokens: int
    keepalive_seconds: float


class Gateway:
    """Admits requests and builds the calls that serve them."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        authenticator: Authenticator,
        limiter: Limiter,
        pool: ProviderPool,
        accounting: Accounting,
        options: GatewayOptions,
    ) -> None:
        self.catalog = catalog
        self.authenticator = authenticator
        self.limiter = limiter
        self.pool = pool
        self.accounting = accounting
        self.options = options

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller, or a 401 :class:`GatewayError`."""
        return await self.authenticator.authenticate(authorization)

    async def prepare(
        self, principal: Principal, request: ChatRequest, *, started: float | None = None
    ) -> Call:
        """Resolve the model and admit the request; 403/404/429 as :class:`GatewayError`.

        A stream whose subject has headroom by this replica's last admission answer
        (``Limiter.headroom``) is admitted *while* its first upstream request is sent —
        one Redis round trip off the time to first token. The relay waits for the
        admission before the client sees a byte; a refusal then cancels the upstream
        request and answers the same 429 (or 503) as before.
        """
        route = self.catalog.resolve(request.model)
        if route is None:
            raise model_not_found(request.model)
        principal.check_model(request.model)
        request_id = os.urandom(16).hex()
        cost = request.reservation(self.options.default_max_tokens)
        # A service key calling for someone: that person's share of the key counts too.
        end_user = None if principal.is_user else request.end_user
        micros = 0
        if principal.budgets:
            micros = worst_case_micros(
                route,
                prompt_tokens=request.prompt_estimate,
                completion_tokens=cost - request.prompt_estimate,
            )
        admission: Admission | None = None
        admitting: asyncio.Task[Admission] | None = None
        # A budget is answered before any upstream call: no headroom shortcut for it.
        if (
            request.stream
            and end_user is None
            and not principal.budgets
            and self.limiter.headroom(principal, cost)
        ):
            admitting = asyncio.create_task(self._admit(principal, cost, request_id, None, 0))
        else:
            admission = await self._admit(principal, cost, request_id, end_user, micros)
        return Call(
            request_id=request_id,
            principal=principal,
            request=request,
            route=route,
            admission=admission,
            label=self.catalog.label(request.model),
            started=started if started is not None else time.perf_counter(),
            default_max_tokens=self.options.default_max_tokens,
            admitting=admitting,
        )

    async def _admit(
        self, principal: Principal, cost: int, member: str, end_user: str | None, micros: int
    ) -> Admission:
        try:
            return await self.limiter.admit(
                principal, cost=cost, member=member, end_user=end_user, micros=micros
            )
        except RateLimited as exc:
            RATELIMIT_REJECTIONS.labels(exc.limit).inc()
            raise

    def relay(
        self, call: Call, client: ClientStream, scanner: Callable[[], StreamScanner]
    ) -> StreamRelay:
        """The relay of a streamed call, writing to ``client``."""
        return StreamRelay(
            call,
            client,
            pool=self.pool,
            accounting=self.accounting,
            scanner=scanner,
            keepalive=self.options.keepalive_seconds,
        )

    def completion(self, call: Call) -> Completion:
        """A non-streamed call."""
        return Completion(call, pool=self.pool, accounting=self.accounting)
