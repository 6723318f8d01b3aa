"""Chorus publisher: the EventBus (one Lua call each: XADD + PUBLISH), as the api publishes.

The command loop is ``publisher_protocol`` (``burst <n>``, ``rate <per second> <seconds>``);
rooms are Chorus rooms (``room:<prefix><i>``). ``REDIS_URL`` says where, or
``REALTIME_REDIS_CLUSTER`` (seed nodes) when the channels live on a Redis Cluster.
"""

from __future__ import annotations

import os
from typing import Any

import uvloop
from publisher_protocol import arguments, serve

from chorus_common.events import CLUSTER, PLAIN, EventBus, EventRedis, room_channel
from chorus_common.redis_client import create_cluster, create_redis
from chorus_common.settings import parse_cluster_seeds


async def main() -> None:
    args = arguments(__doc__.split("\n")[0])
    seeds = parse_cluster_seeds(os.environ.get("REALTIME_REDIS_CLUSTER", ""))
    redis: EventRedis = (
        create_redis(os.environ["REDIS_URL"], client_name="bench-publisher")
        if seeds is None
        else create_cluster(seeds, client_name="bench-publisher")
    )
    layout = PLAIN if seeds is None else CLUSTER
    bus = EventBus(redis, history_size=1000, history_ttl=86_400, layout=layout)

    async def send(room: str | None, data: dict[str, Any]) -> None:
        assert room is not None, "Chorus publishes to a room"
        await bus.publish(room_channel(room), "message", data, sender="bench")

    try:
        await serve(send, args)
    finally:
        await redis.aclose()


uvloop.run(main())
