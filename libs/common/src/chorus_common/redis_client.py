"""The Redis client factories: the main Redis (one server or a Sentinel group), and the
Redis Cluster the channels may live on.

Connection errors are retried with capped exponential backoff so a Redis failover or
restart costs a request a few hundred milliseconds rather than an error; idle
connections are health-checked before reuse so a restarted server is noticed at once.

**Sentinel.** With ``REDIS_SENTINELS`` set (:class:`RedisEndpoint`), every new connection
asks the Sentinels for the current primary of ``REDIS_SENTINEL_MASTER`` (redis-py's
``SentinelConnectionPool``): a Sentinel that sees the primary down answers with no
primary, so nothing connects to a dead or demoted server. When the primary fails, its
connections break, the retry reconnects, and the Sentinels name the promoted replica — a
failover is a few seconds of errors, never a restart. A connection still open to a
demoted primary gets ``READONLY`` on its first write and is dropped the same way (and
Sentinel closes the clients of every server it reconfigures).

**Cluster.** :func:`create_cluster` is redis-py's ``RedisCluster`` for
``REALTIME_REDIS_CLUSTER``: it follows ``MOVED`` and ``ASK`` redirections and re-reads
the slot map after a node fails. Where redis-py would close the connections to *every*
node when one fails (failing, and retrying, the commands in flight on healthy nodes — a
script run twice is an event published twice), :class:`ChannelCluster` only re-reads the
slot map and keeps the connections of the nodes still there: a room on another node
never notices. No readiness check uses it: a cluster failover must not
take the api or the worker out of service (only some channels' events wait for it), and
realtime's canary checks the way through each node it subscribes on.

The readiness check also reports how full Redis is: it asks ``INFO memory`` instead of
``PING`` and exports ``chorus_redis_memory_used_bytes`` and ``chorus_redis_memory_max_bytes``
(``maxmemory``, 0 when unlimited), so the alerts on Redis memory need no exporter of
their own. A Redis that refuses ``INFO`` (an ACL) is pinged instead, and the gauges stay
where they were.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from prometheus_client import Gauge
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, NodesManager, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chorus_common.settings import ClusterSeeds, EventHistorySettings, RedisSettings

__all__ = [
    "REDIS_MEMORY_MAX",
    "REDIS_MEMORY_USED",
    "ChannelCluster",
    "RedisEndpoint",
    "create_channel_cluster",
    "create_cluster",
    "create_redis",
    "redis_check",
]

R = TypeVar("R", bound=Redis)

logger = logging.getLogger("chorus.redis")

REDIS_MEMORY_USED = Gauge(
    "chorus_redis_memory_used_bytes",
    "Redis used_memory (INFO memory) at this process's last readiness check.",
)
REDIS_MEMORY_MAX = Gauge(
    "chorus_redis_memory_max_bytes",
    "Redis maxmemory (0: no limit) at this process's last readiness check.",
)

#: Seconds to wait for a Sentinel's answer before asking the next one.
SENTINEL_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    """Where the main Redis is: ``url``, or the primary a group of Sentinels names."""

    url: str = "redis://127.0.0.1:6379/0"
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = "mymaster"
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> RedisEndpoint:
        """``REDIS_URL``, or ``REDIS_SENTINELS`` and its companions when set."""
        return cls(
            url=settings.redis_url,
            sentinels=settings.sentinel_addresses,
            master=settings.redis_sentinel_master,
            password=_secret(settings.redis_password),
            sentinel_password=_secret(settings.redis_sentinel_password),
        )

    @property
    def uses_sentinel(self) -> bool:
        """True when the primary is found through Sentinels."""
        return bool(self.sentinels)

    def describe(self) -> str:
        """Where this is, for logs and banners (no password)."""
        if self.uses_sentinel:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel://{hosts}/{self.master}"
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"

    def sentinel(self, *, client_name: str) -> Sentinel:
        """A client of the Sentinels (for discovery; close its ``sentinels`` when done)."""
        return Sentinel(  # type: ignore[no-untyped-call]
            list(self.sentinels),
            sentinel_kwargs={
                "password": self.sentinel_password,
                "socket_timeout": SENTINEL_TIMEOUT,
                "socket_connect_timeout": SENTINEL_TIMEOUT,
                "client_name": f"{client_name}:sentinel",
            },
        )


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


class _SentinelPool(SentinelConnectionPool):
    """The Sentinel pool, closing its Sentinel clients along with its connections."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # the client is closing (a new primary only drops idle ones)
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.aclose()


class _BlockingSentinelPool(_SentinelPool, BlockingConnectionPool):
    """The Sentinel pool that waits for a free connection instead of failing at once."""


@overload
def create_redis(
    where: str | RedisEndpoint,
    *,
    client_name: str,
    max_connections: int = ...,
    socket_timeout: float | None = ...,
    retries: int = ...,
    pool_timeout: float | None = ...,
) -> Redis: ...


@overload
def create_redis(
    where: str | RedisEndpoint,
    *,
    client_name: str,
    max_connections: int = ...,
    socket_timeout: float | None = ...,
    retries: int = ...,
    pool_timeout: float | None = ...,
    redis_class: type[R],
) -> R: ...


def create_redis(
    where: str | RedisEndpoint,
    *,
    client_name: str,
    max_connections: int = 64,
    socket_timeout: float | None = 5.0,
    retries: int = 3,
    pool_timeout: float | None = 5.0,
    redis_class: type[Redis] = Redis,
) -> Redis:
    """A client for ``where`` (a URL or an endpoint) that retries transient failures.

    ``socket_timeout`` bounds every command; pass ``None`` for a client that issues
    blocking reads (``XREAD BLOCK``, pub/sub ``listen``) longer than that. When all
    ``max_connections`` are busy, a command waits up to ``pool_timeout`` seconds for one
    (a blocking pool) instead of failing at once with "Too many connections"; ``None``
    asks for the plain pool, which fails at once (and costs no timer per command).
    ``redis_class`` is the client built on the pool (arq's ``ArqRedis`` for the queue).
    """
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "client_name": client_name,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 2.0,
        "socket_keepalive": True,
        "health_check_interval": 10,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        "decode_responses": False,
    }
    if pool_timeout is not None:
        options["timeout"] = pool_timeout
    endpoint = RedisEndpoint(url=where) if isinstance(where, str) else where
    if endpoint.uses_sentinel:
        pool_class = _BlockingSentinelPool if pool_timeout is not None else _SentinelPool
        client: Redis = endpoint.sentinel(client_name=client_name).master_for(
            endpoint.master,
            redis_class=redis_class,
            connection_pool_class=pool_class,
            password=endpoint.password,
            **options,
        )
        return client
    plain = BlockingConnectionPool if pool_timeout is not None else ConnectionPool
    pool = plain.from_url(endpoint.url, **options)
    # from_pool: the client owns the pool, so aclose() closes its connections too.
    return redis_class.from_pool(pool)


#: Seconds between two re-reads of a cluster's slot map while nodes keep failing.
_REFRESH_SPACING = 0.1

#: Set while a :class:`ChannelCluster` runs a command in this task: an ``aclose()`` then
#: comes from redis-py's error handling, not from the client's owner.
_IN_COMMAND: ContextVar[bool] = ContextVar("chorus_cluster_in_command", default=False)


@contextmanager
def _in_command() -> Iterator[None]:
    token = _IN_COMMAND.set(True)
    try:
        yield
    finally:
        _IN_COMMAND.reset(token)


class _Node(ClusterNode):
    """A node that takes back its connection when sending fails (redis-py's leaks it, so a
    node that stays in the slot map while it is down runs out of connections)."""

    __slots__ = ()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        connection = self.acquire_connection()
        try:
            await connection.send_packed_command(connection.pack_command(*args), False)
        except BaseException:
            self._free.append(connection)
            raise
        try:
            return await self.parse_response(connection, args[0], **kwargs)
        finally:
            self._free.append(connection)


class _KeepingNodesManager(NodesManager):
    """Re-reads the slot map but keeps the node objects — and their open connections — of
    the servers still in it (redis-py builds new ones and disconnects the old, failing
    every command in flight)."""

    __slots__ = ()

    def set_nodes(
        self,
        old: dict[str, ClusterNode],
        new: dict[str, ClusterNode],
        remove_old: bool = False,
    ) -> None:
        for node in new.values():
            if type(node) is ClusterNode:
                node.__class__ = _Node
        if old is self.nodes_cache and old:
            kept: dict[str, ClusterNode] = {}
            for name, node in new.items():
                current = old.get(name)
                if current is None or current is node:
                    kept[name] = node
                else:
                    current.server_type = node.server_type
                    kept[name] = current
            lists: dict[int, list[ClusterNode]] = {}
            for slot, nodes in self.slots_cache.items():
                mapped = lists.get(id(nodes))
                if mapped is None:
                    mapped = lists[id(nodes)] = [kept.get(n.name, n) for n in nodes]
                self.slots_cache[slot] = mapped
            new = kept
        super().set_nodes(old, new, remove_old)


class _ChannelPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        with _in_command():
            return await super().execute(raise_on_error, allow_redirections)


class ChannelCluster(RedisCluster):
    """redis-py's cluster client, but a failing node costs only its own commands.

    On a connection error redis-py calls ``aclose()``, closing every node's connections so
    that the next command re-reads the slot map — and every command waits for that read.
    Here that call, made while a command runs, starts one re-read in the background
    (coalescing the requests that arrive meanwhile); commands for the other nodes go on
    with the map they have, and a command for the failed node fails fast until the map
    names its successor. The owner's ``aclose()`` still closes everything.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nodes_manager.__class__ = _KeepingNodesManager
        self._refresh: asyncio.Task[None] | None = None
        self._refresh_again = False

    async def initialize(self) -> ChannelCluster:
        """Read the slot map and the command table before the first command. Unlike
        redis-py, a failed read closes no connection, and the command table is not read
        again at each re-read (from whichever node is listed first — perhaps a dead one)."""
        if self._initialize:
            if not self._lock:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._initialize:
                    await self.nodes_manager.initialize()
                    if not self.commands_parser.commands:
                        await self.commands_parser.initialize(self.nodes_manager.default_node)
                    self._initialize = False
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with _in_command():
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        if transaction:
            raise RedisClusterException("transaction is deprecated in cluster mode")
        # redis-py's commands protocol declares connection_pool abstract; clusters have none.
        return _ChannelPipeline(self)  # type: ignore[abstract]

    async def aclose(self) -> None:
        if _IN_COMMAND.get():
            self._refresh_soon()
            return
        if self._refresh is not None:
            self._refresh.cancel()
            with suppress(asyncio.CancelledError):
                await self._refresh
            self._refresh = None
        await super().aclose()

    def _refresh_soon(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            self._refresh_again = True
            return
        self._refresh = asyncio.create_task(self._refresh_map(), name="cluster-slot-map")

    async def _refresh_map(self) -> None:
        while True:
            self._refresh_again = False
            try:
                await self.nodes_manager.initialize()
            except (RedisError, OSError) as exc:
                logger.info("re-reading the cluster's slot map failed: %s", exc)
                self._refresh_again = True
            if not self._refresh_again:
                return
            await asyncio.sleep(_REFRESH_SPACING)


def create_cluster(
    seeds: ClusterSeeds,
    *,
    client_name: str,
    max_connections: int = 64,
    socket_timeout: float | None = 5.0,
    retries: int = 3,
) -> ChannelCluster:
    """A Redis Cluster client (commands; sharded pub/sub is realtime's own connection).

    ``max_connections`` bounds the connections to each node. Nothing connects before the
    first command, so a service starts while the cluster is still forming.
    """
    return ChannelCluster(  # type: ignore[abstract] # as for _ChannelPipeline
        startup_nodes=[_Node(host, port) for host, port in seeds.nodes],
        username=seeds.username,
        password=seeds.password,
        ssl=seeds.tls,
        client_name=client_name,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        cluster_error_retry_attempts=retries,
        decode_responses=False,
    )


def create_channel_cluster(
    settings: EventHistorySettings, *, client_name: str, max_connections: int = 64
) -> RedisCluster | None:
    """The client of the cluster the channels live on (``REALTIME_REDIS_CLUSTER``), or
    None when they live on the main Redis. The owner closes it."""
    seeds = settings.cluster_seeds
    if seeds is None:
        return None
    return create_cluster(seeds, client_name=client_name, max_connections=max_connections)


def redis_check(client: Redis) -> RedisCheck:
    """A readiness check that asks ``client`` for its memory (for :meth:`Health.add_check`)."""
    return RedisCheck(client)


class RedisCheck:
    """Callable readiness check; a class so the bound client is visible in a debugger."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.info_allowed = True

    async def __call__(self) -> None:
        """Raise unless Redis answers; note its memory use on the way."""
        if self.info_allowed:
            try:
                memory = await self.client.info("memory")
            except ResponseError as exc:
                logger.warning("Redis refuses INFO (%s): readiness pings it instead", exc)
                self.info_allowed = False
            else:
                REDIS_MEMORY_USED.set(float(memory.get("used_memory", 0)))
                REDIS_MEMORY_MAX.set(float(memory.get("maxmemory", 0)))
                return
        await self.client.ping()
