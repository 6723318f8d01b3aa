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
the slot map after a node fails; :class:`ClusterCheck` is its readiness check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chorus_common.settings import ClusterSeeds, RedisSettings

__all__ = [
    "ClusterCheck",
    "RedisEndpoint",
    "create_cluster",
    "create_redis",
    "redis_check",
]

R = TypeVar("R", bound=Redis)

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


def create_cluster(
    seeds: ClusterSeeds,
    *,
    client_name: str,
    max_connections: int = 64,
    socket_timeout: float | None = 5.0,
    retries: int = 3,
) -> RedisCluster:
    """A Redis Cluster client (commands; sharded pub/sub is realtime's own connection).

    ``max_connections`` bounds the connections to each node. Nothing connects before the
    first command, so a service starts while the cluster is still forming.
    """
    cluster: RedisCluster = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds.nodes],
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
    return cluster


def redis_check(client: Redis) -> RedisCheck:
    """A readiness check that pings ``client`` (for :meth:`Health.add_check`)."""
    return RedisCheck(client)


class RedisCheck:
    """Callable readiness check; a class so the bound client is visible in a debugger."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    async def __call__(self) -> None:
        """Raise unless Redis answers PING."""
        await self.client.ping()


class ClusterCheck:
    """Readiness of a Redis Cluster: a node answers and says every slot is served.

    ``cluster_state:fail`` — a primary is down and its replica not yet promoted, or slots
    are not covered — fails the check: events of some channels cannot be published.
    """

    def __init__(self, client: RedisCluster) -> None:
        self.client = client

    async def __call__(self) -> None:
        """Raise unless a node reports ``cluster_state:ok``."""
        await self.client.initialize()
        errors: list[str] = []
        for node in self.client.get_primaries():
            try:
                info = await self.client.execute_command("CLUSTER INFO", target_nodes=node)
            except (RedisError, OSError) as exc:
                errors.append(f"{node.name}: {exc}")
                continue
            state = _cluster_state(info)
            if state == "ok":
                return
            errors.append(f"{node.name}: cluster_state:{state}")
        raise RuntimeError("; ".join(errors) or "no cluster node known")


def _cluster_state(info: Any) -> str:
    if isinstance(info, dict):
        return str(info.get("cluster_state", "unknown"))
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("cluster_state:"):
            return line.partition(":")[2].strip()
    return "unknown"
