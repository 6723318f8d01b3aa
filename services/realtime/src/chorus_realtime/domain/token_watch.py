"""Open connections end with their token: expired or revoked, the socket is closed.

A WebSocket or SSE stream is authenticated once, when it opens, and may then live for
hours — longer than its token, and past a password change or the account's deletion.
:class:`TokenWatch` walks this replica's connections every ``TOKEN_VERSION_CACHE_SECONDS``
(at least every second, at most every 30): a connection whose token has expired is closed,
and so is one whose account has since revoked its token's version (read for all the
connected accounts at once, a few ``MGET``\\ s, through the same cache as the connect
check). WebSockets get close code **4401** with the reason ``token expired`` or
``token revoked`` — log in again, then reconnect; SSE streams end, and reconnecting with
the old token is a 401. Each check costs no memory per connection beyond two numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from chorus_common.tokens import LEEWAY_SECONDS, TokenVersions
from chorus_realtime.domain.connection import CloseCode
from chorus_realtime.domain.periodic import Periodic
from chorus_realtime.domain.registry import Registry
from chorus_realtime.metrics import TOKEN_CLOSES

__all__ = ["TokenWatch"]

logger = logging.getLogger("chorus.realtime.token_watch")


class TokenWatch:
    """Closes this replica's connections whose token expired or was revoked."""

    def __init__(
        self,
        registry: Registry,
        versions: TokenVersions,
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.versions = versions
        self.interval = min(30.0, max(1.0, interval))
        self._clock = clock
        self._periodic = Periodic(
            self.sweep, interval=self.interval, name="token-watch", what="check token revocations"
        )

    async def sweep(self) -> int:
        """Close what must be closed now; how many connections were closed."""
        # The same leeway as the verification itself: a token is never refused here
        # while another replica would still accept it.
        deadline = self._clock() - LEEWAY_SECONDS
        live = []
        closed = 0
        for connection in self.registry:
            if connection.closing:
                continue
            if connection.expires_at <= deadline:
                connection.close(CloseCode.UNAUTHORIZED, "token expired")
                TOKEN_CLOSES.labels("expired").inc()
                logger.info("closing %s: token expired", connection)
                closed += 1
            else:
                live.append(connection)
        if not live:
            return closed
        minimums = await self.versions.minimums(c.user for c in live)
        for connection in live:
            if connection.token_version < minimums.get(connection.user, 0):
                connection.close(CloseCode.UNAUTHORIZED, "token revoked")
                TOKEN_CLOSES.labels("revoked").inc()
                logger.info("closing %s: token revoked", connection)
                closed += 1
        return closed

    def start(self) -> None:
        """Sweep every ``interval`` seconds in the background (a failed read of the token
        versions waits a turn: expired tokens were closed before it)."""
        self._periodic.start()

    async def stop(self) -> None:
        """Stop sweeping."""
        await self._periodic.stop()
