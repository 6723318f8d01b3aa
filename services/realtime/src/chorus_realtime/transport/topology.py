"""Where a channel's pub/sub lives: the one Redis, the primary Sentinel names, or the node
of a Redis Cluster that owns the channel's hash slot.

The hub keeps one pub/sub connection per *node* (:meth:`Topology.node_for`) and asks
:meth:`Topology.address` where that node is each time it connects, so:

- :class:`SingleTopology` has one node. Its address is ``REDIS_URL``'s, or — with
  ``REDIS_SENTINELS`` — whatever the Sentinels say the primary is right now (asked on
  every reconnect; a Sentinel that sees the primary down names none, and the hub retries).
- :class:`ClusterTopology` has a node per primary, from a slot map read with
  ``CLUSTER SLOTS`` from any node that answers (the last known primaries first, then the
  seeds). The hub refreshes it whenever a connection fails, a node says ``MOVED`` or
  unsubscribes a channel because its slot moved; a ``MOVED`` also patches the map at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import RedisError

from chorus_common.redis_client import RedisEndpoint
from chorus_common.settings import ClusterSeeds
from chorus_realtime.transport.pubsub import RedisAddress

__all__ = ["ClusterTopology", "SingleTopology", "Topology"]

logger = logging.getLogger("chorus.realtime.topology")

#: The node of a single Redis.
SINGLE = "redis"
#: Seconds a node gets to answer ``CLUSTER SLOTS``.
_SLOTS_TIMEOUT = 1.0
#: Refreshes of the slot map closer together than this share one read.
_REFRESH_INTERVAL = 0.05


class Topology(Protocol):
    """Which node a pub/sub channel is on, and where that node is."""

    #: True: sharded pub/sub (SSUBSCRIBE on the slot's node); False: classic.
    sharded: bool

    def node_for(self, channel: bytes) -> str:
        """The node ``channel`` (a pub/sub channel name) is served by, as far as known."""

    def nodes(self) -> list[str]:
        """The nodes known to serve channels now."""

    async def address(self, node: str) -> RedisAddress:
        """Where ``node`` is, now; raises if it cannot be found."""

    async def refresh(self) -> None:
        """Read where channels are again (after a failure or a move)."""

    def moved(self, slot: int, host: str, port: int) -> None:
        """A node answered ``MOVED slot host:port``: the slot is served there now."""

    async def close(self) -> None:
        """Release what finding nodes holds open."""


class SingleTopology:
    """Everything on one server: ``REDIS_URL``, or the primary the Sentinels name."""

    sharded = False

    def __init__(self, endpoint: RedisEndpoint, *, client_name: str) -> None:
        self.endpoint = endpoint
        self._sentinel = (
            endpoint.sentinel(client_name=client_name) if endpoint.uses_sentinel else None
        )
        self._url = None if endpoint.uses_sentinel else RedisAddress.from_url(endpoint.url)

    def node_for(self, channel: bytes) -> str:
        """The one node."""
        return SINGLE

    def nodes(self) -> list[str]:
        """The one node."""
        return [SINGLE]

    async def address(self, node: str) -> RedisAddress:
        """``REDIS_URL``'s address, or the primary the Sentinels name now."""
        if self._sentinel is None:
            assert self._url is not None
            return self._url
        host, port = await self._sentinel.discover_master(self.endpoint.master)
        return RedisAddress(host=str(host), port=int(port), password=self.endpoint.password)

    async def refresh(self) -> None:
        """Nothing to read: :meth:`address` asks the Sentinels on every connect."""

    def moved(self, slot: int, host: str, port: int) -> None:
        """Not a cluster: never happens."""

    async def close(self) -> None:
        """Close the Sentinel clients."""
        if self._sentinel is not None:
            for client in self._sentinel.sentinels:
                await client.aclose()


class ClusterTopology:
    """The slot map of a Redis Cluster: each primary is a node."""

    sharded = True

    def __init__(self, seeds: ClusterSeeds, *, client_name: str) -> None:
        self.seeds = seeds
        self.client_name = client_name
        self._slots: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = -1.0
        self.refreshes = 0

    def node_for(self, channel: bytes) -> str:
        """The primary owning ``channel``'s slot (the first seed until a map is read)."""
        node = self._slots[key_slot(channel)]
        if node is None:
            host, port = self.seeds.nodes[0]
            return f"{host}:{port}"
        return node

    def nodes(self) -> list[str]:
        """The primaries in the slot map."""
        return sorted({node for node in self._slots if node is not None})

    def slots_of(self, node: str) -> list[int]:
        """The slots ``node`` serves, as far as known."""
        return [slot for slot, owner in enumerate(self._slots) if owner == node]

    async def address(self, node: str) -> RedisAddress:
        """``host:port`` with the seeds' credentials."""
        host, _, port = node.rpartition(":")
        return RedisAddress(
            host=host,
            port=int(port),
            username=self.seeds.username,
            password=self.seeds.password,
            tls=self.seeds.tls,
        )

    def moved(self, slot: int, host: str, port: int) -> None:
        """Serve ``slot`` from ``host:port`` from now on."""
        if 0 <= slot < REDIS_CLUSTER_HASH_SLOTS:
            self._slots[slot] = f"{host}:{port}"

    async def refresh(self) -> None:
        """Read the slot map again; concurrent callers share one read."""
        if self._refreshing is None or self._refreshing.done():
            if time.monotonic() - self._refreshed_at < _REFRESH_INTERVAL:
                return
            self._refreshing = asyncio.create_task(self._refresh(), name="cluster-slots")
        await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        candidates = [*self.nodes(), *(f"{h}:{p}" for h, p in self.seeds.nodes)]
        errors = []
        for node in dict.fromkeys(candidates):
            try:
                ranges = await self._cluster_slots(node)
            except (RedisError, OSError) as exc:
                errors.append(f"{node}: {exc}")
                continue
            slots: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
            for start, end, primary, *_ in ranges:
                host = _text(primary[0]) or node.rpartition(":")[0]
                owner = f"{host}:{int(primary[1])}"
                slots[int(start) : int(end) + 1] = [owner] * (int(end) - int(start) + 1)
            self._slots = slots
            self._refreshed_at = time.monotonic()
            self.refreshes += 1
            return
        msg = "no cluster node answers CLUSTER SLOTS: " + "; ".join(errors)
        raise ConnectionError(msg)

    async def _cluster_slots(self, node: str) -> list[list[Any]]:
        address = await self.address(node)
        client = Redis(
            host=address.host,
            port=address.port,
            username=address.username,
            password=address.password,
            ssl=address.tls,
            socket_timeout=_SLOTS_TIMEOUT,
            socket_connect_timeout=_SLOTS_TIMEOUT,
            client_name=f"{self.client_name}:topology",
        )
        try:
            ranges: list[list[Any]] = await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()
        return ranges

    async def close(self) -> None:
        """Nothing is held open between refreshes."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
