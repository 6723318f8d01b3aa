"""Everything the api holds open while it runs, created and closed by the lifespan.

One engine and its pool, shared by transactional sessions (writes) and autocommit sessions
(reads); a plain asyncpg pool for the session-less :class:`~chorus_api.transport.reader.Reader` (hot
reads; ``DB_READ_POOL_SIZE`` connections, see that module for why); one Redis
client whose connection pool the arq client and the event bus share; the token service
and its verifier (signature, then revocation), the password hasher behind the login
limits, the sign-up limits, the room services (access lists in Redis, quotas), and the
tasks that keep Redis's copies of token revocations, room access lists and virtual keys in
step with Postgres. Routes reach them through the ``Annotated`` dependencies of
:mod:`chorus_api.deps`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chorus_api.domain.credentials import Credentials
from chorus_api.domain.devices import DeviceCookies
from chorus_api.domain.key_directory import KeyDirectory
from chorus_api.domain.login_limits import LoginLimiter
from chorus_api.domain.passwords import PasswordHasher
from chorus_api.domain.quotas import Quotas
from chorus_api.domain.revocations import Revocations
from chorus_api.domain.room_acl import AclWriter, RoomAclSync
from chorus_api.domain.rooms import RoomLimits, RoomServices
from chorus_api.domain.signup_limits import SignupLimiter
from chorus_api.metrics import track_pool, track_read_pool, untrack_pool
from chorus_api.settings import ApiSettings
from chorus_api.transport.pool import (
    PoolGate,
    SessionFactory,
    admitted_sessions,
    discard_closed_connections,
    read_sessionmaker,
)
from chorus_api.transport.reader import Reader, close_read_pool, create_read_pool
from chorus_common.database import create_engine, create_sessionmaker
from chorus_common.events import EventBus
from chorus_common.queue import JOB_CODEC
from chorus_common.redis_client import RedisEndpoint, create_channel_cluster, create_redis
from chorus_common.rooms import RoomDirectory
from chorus_common.tokens import TokenService, TokenVerifier, TokenVersions

__all__ = ["Resources", "open_resources"]


@dataclass(frozen=True, slots=True)
class Resources:
    """The api's pools and clients."""

    settings: ApiSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    pool_gate: PoolGate
    #: A transactional session admitted through the gate, opened only when needed.
    open_session: SessionFactory
    reader: Reader
    redis: Redis
    arq: ArqRedis
    #: The cluster's client when the channels live on one (``REALTIME_REDIS_CLUSTER``).
    cluster: RedisCluster | None
    bus: EventBus
    tokens: TokenService
    #: Bearer auth on every request: signature and claims (remembered), then revocation.
    token_verifier: TokenVerifier
    revocations: Revocations
    #: Virtual keys' copy in Redis, for the gateways.
    key_directory: KeyDirectory
    credentials: Credentials
    signup_limiter: SignupLimiter
    rooms: RoomServices


@asynccontextmanager
async def open_resources(settings: ApiSettings) -> AsyncIterator[Resources]:
    """Open every pool and client (no connection is made yet); close them on exit.

    Nothing here connects eagerly, so the api starts while Postgres or Redis are still
    coming up and ``/readyz`` reports them until they answer.
    """
    engine = create_engine(settings)
    discard_closed_connections(engine)
    read_pool = await create_read_pool(engine, settings, size=settings.db_read_pool_size)
    redis = create_redis(
        RedisEndpoint.from_settings(settings),
        client_name="chorus-api",
        max_connections=settings.redis_max_connections,
    )
    cluster = create_channel_cluster(
        settings, client_name="chorus-api", max_connections=settings.redis_max_connections
    )
    # arq's create_pool() would open a second pool and insist on connecting at startup;
    # its client is a redis.asyncio.Redis subclass, so it can share ours instead.
    arq = ArqRedis(
        pool_or_conn=redis.connection_pool,
        default_queue_name=settings.arq_queue_name,
        **JOB_CODEC,
    )
    pool_gate = PoolGate(
        slots=settings.db_pool_size + settings.db_max_overflow,
        timeout=settings.db_pool_timeout,
    )
    tokens = TokenService(
        secret=settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        ttl=timedelta(seconds=settings.access_token_ttl_seconds),
    )
    versions = TokenVersions(redis, cache_seconds=settings.token_version_cache_seconds)
    sessions = create_sessionmaker(engine)
    open_session = admitted_sessions(pool_gate, sessions)
    revocations = Revocations(redis, versions)
    track_pool(engine)
    track_read_pool(read_pool)
    resync = asyncio.create_task(
        revocations.run(open_session, interval=settings.token_resync_seconds),
        name="token-revocation-resync",
    )
    bus = EventBus.from_settings(redis if cluster is None else cluster, settings)
    directory = RoomDirectory(redis)
    room_sync = asyncio.create_task(
        RoomAclSync(directory).run(open_session, interval=settings.room_acl_resync_seconds),
        name="room-acl-resync",
    )
    key_directory = KeyDirectory(redis)
    key_resync = asyncio.create_task(
        key_directory.run(open_session, interval=settings.key_resync_seconds),
        name="virtual-key-resync",
    )
    try:
        yield Resources(
            settings=settings,
            engine=engine,
            sessions=sessions,
            read_sessions=read_sessionmaker(engine),
            pool_gate=pool_gate,
            open_session=open_session,
            reader=Reader(
                read_pool,
                PoolGate(slots=settings.db_read_pool_size, timeout=settings.db_pool_timeout),
                engine.dialect,
            ),
            redis=redis,
            arq=arq,
            cluster=cluster,
            bus=bus,
            tokens=tokens,
            token_verifier=TokenVerifier(tokens, versions),
            revocations=revocations,
            key_directory=key_directory,
            credentials=Credentials(
                hasher=PasswordHasher(concurrency=settings.password_hash_concurrency),
                limiter=LoginLimiter(
                    redis,
                    window_seconds=settings.login_window_seconds,
                    free_failures=settings.login_free_failures,
                    max_per_account=settings.login_max_failures_per_account,
                    max_per_address=settings.login_max_failures_per_address,
                    max_per_device=settings.login_max_failures_per_device,
                ),
                devices=DeviceCookies(
                    settings.jwt_secret.get_secret_value(),
                    max_age_seconds=settings.login_device_cookie_days * 86_400,
                ),
            ),
            signup_limiter=SignupLimiter(
                redis,
                window_seconds=settings.signup_window_seconds,
                max_per_address=settings.signup_max_per_address,
                max_per_minute=settings.signup_max_per_minute,
            ),
            rooms=RoomServices(
                writer=AclWriter(directory, bus),
                directory=directory,
                bus=bus,
                arq=arq,
                quotas=Quotas(redis),
                limits=RoomLimits(
                    max_owned=settings.rooms_max_owned,
                    max_members=settings.room_max_members,
                    max_pending_invitations=settings.room_max_pending_invitations,
                    invitations_per_hour=settings.room_invitations_per_hour,
                    invitation_mails_per_address_per_day=(
                        settings.room_invitation_mails_per_address_per_day
                    ),
                    dms_per_hour=settings.dm_opens_per_hour,
                    private_rooms=settings.cluster_seeds is None,
                ),
            ),
        )
    finally:
        for task in (resync, room_sync, key_resync):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        untrack_pool()
        await arq.aclose()
        await redis.aclose()
        if cluster is not None:
            await cluster.aclose()
        await close_read_pool(read_pool, grace=settings.graceful_timeout)
        await engine.dispose()
