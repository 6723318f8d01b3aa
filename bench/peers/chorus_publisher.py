"""Chorus publisher: the EventBus (one Lua call each: XADD + PUBLISH), as the api publishes.

The command loop is ``publisher_protocol`` (``burst <n>``, ``rate <per second> <seconds>``);
rooms are Chorus rooms (``room:<prefix><i>``). ``REDIS_URL`` says where.
"""

from __future__ import annotations

import os
from typing import Any

import uvloop
from publisher_protocol import arguments, serve

from chorus_common.events import EventBus, room_channel
from chorus_common.redis_client import create_redis


async def main() -> None:
    args = arguments(__doc__.split("\n")[0])
    redis = create_redis(os.environ["REDIS_URL"], client_name="bench-publisher")
    bus = EventBus(redis, history_size=1000, history_ttl=86_400)

    async def send(room: str | None, data: dict[str, Any]) -> None:
        assert room is not None, "Chorus publishes to a room"
        await bus.publish(room_channel(room), "message", data, sender="bench")

    try:
        await serve(send, args)
    finally:
        await redis.aclose()


uvloop.run(main())
