"""Per-user quotas in Redis: one bucket per user, whichever replica charges it."""

from __future__ import annotations

import os

import pytest
from redis.asyncio import Redis

from chorus_common.events import CLUSTER, EventBus, room_channel
from chorus_common.redis_client import create_cluster
from chorus_common.settings import parse_cluster_seeds
from chorus_devstack.servers import RunningRedisCluster
from chorus_realtime.domain.quotas import QuotaExceeded, Quotas, QuotaSettings

SETTINGS = QuotaSettings(bytes_per_second=100, bytes_burst=1000, new_rooms_per_minute=2)


async def test_two_replicas_draw_from_the_same_byte_bucket(redis: Redis) -> None:
    one, two = Quotas(redis, SETTINGS), Quotas(redis, SETTINGS)
    user = f"u{os.urandom(4).hex()}"
    await one.charge_bytes(user, 400)
    await two.charge_bytes(user, 400)
    with pytest.raises(QuotaExceeded) as refused:
        await one.charge_bytes(user, 400)
    assert refused.value.quota == "bytes"
    # 200 bytes are left; 400 need 200 more, at 100 a second.
    assert 1.5 <= refused.value.retry_after <= 2.0
    await two.charge_bytes(user, 150)  # what is left still fits
    await Quotas(redis, SETTINGS).charge_bytes(f"{user}-other", 1000)  # others are untouched


async def test_only_rooms_without_history_cost_a_room(redis: Redis) -> None:
    one, two = Quotas(redis, SETTINGS), Quotas(redis, SETTINGS)
    user = f"u{os.urandom(4).hex()}"
    existing = room_channel(f"busy-{os.urandom(3).hex()}")
    await EventBus(redis, history_size=1000, history_ttl=86_400).publish(
        existing, "message", {"message": "hi"}, sender="x"
    )
    for _ in range(5):
        await one.enter_room(user, existing)
    await one.enter_room(user, room_channel(f"new-{os.urandom(3).hex()}"))
    await two.enter_room(user, room_channel(f"new-{os.urandom(3).hex()}"))
    with pytest.raises(QuotaExceeded) as refused:
        await one.enter_room(user, room_channel(f"new-{os.urandom(3).hex()}"))
    assert refused.value.quota == "rooms"
    assert 0 < refused.value.retry_after <= 30  # one room back every 30 s
    await two.enter_room(user, existing)


async def test_with_the_channels_on_a_cluster_only_new_rooms_cost_a_room(
    redis: Redis, redis_cluster: RunningRedisCluster
) -> None:
    # The buckets stay on the main Redis; whether a room exists is asked where it lives.
    seeds = parse_cluster_seeds(redis_cluster.seeds)
    assert seeds is not None
    cluster = create_cluster(seeds, client_name="test-quotas")
    try:
        bus = EventBus(cluster, history_size=1000, history_ttl=600, layout=CLUSTER)
        quotas = Quotas(redis, SETTINGS, bus=bus)
        user = f"u{os.urandom(4).hex()}"
        existing = room_channel(f"busy-{os.urandom(3).hex()}")
        await bus.publish(existing, "message", {"message": "hi"}, sender="x")
        for _ in range(5):
            await quotas.enter_room(user, existing)
        await quotas.enter_room(user, room_channel(f"new-{os.urandom(3).hex()}"))
        await quotas.enter_room(user, room_channel(f"new-{os.urandom(3).hex()}"))
        with pytest.raises(QuotaExceeded):
            await quotas.enter_room(user, room_channel(f"new-{os.urandom(3).hex()}"))
        await quotas.enter_room(user, existing)
    finally:
        await cluster.aclose()
