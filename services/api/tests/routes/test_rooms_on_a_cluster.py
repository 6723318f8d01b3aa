"""With the channels on a Redis Cluster every room is public: no private room, no DM."""

from __future__ import annotations

import httpx

from chorus_api.main import create_app
from chorus_devstack.servers import RunningRedis, RunningRedisCluster
from chorus_devstack.testing import base_url, serve_app

from ..support import create_room, make_settings, new_account, room_name


async def test_private_rooms_and_dms_are_refused_where_the_channels_are_on_a_cluster(
    database_url: str, redis_server: RunningRedis, redis_cluster: RunningRedisCluster
) -> None:
    settings = make_settings(
        database_url=database_url,
        redis_url=redis_server.url,
        realtime_redis_cluster=redis_cluster.seeds,
    )
    async with (
        serve_app(create_app(settings)) as server,
        httpx.AsyncClient(base_url=base_url(server), trust_env=False, timeout=30) as client,
    ):
        owner, peer = await new_account(client, "owner"), await new_account(client, "peer")
        name = room_name("closed")
        refused = await client.post(
            "/api/rooms", json={"name": name, "visibility": "private"}, headers=owner.headers
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "private_rooms_unavailable"
        # A public room is fine, and cannot be made private later.
        public = await create_room(client, owner, visibility="public", name=name)
        closing = await client.patch(
            f"/api/rooms/{public}", json={"visibility": "private"}, headers=owner.headers
        )
        assert closing.status_code == 409, closing.text
        assert closing.json()["error"]["code"] == "private_rooms_unavailable"
        room = await client.get(f"/api/rooms/{public}", headers=owner.headers)
        assert room.json()["visibility"] == "public"
        dm = await client.post("/api/dms", json={"user_id": peer.id}, headers=owner.headers)
        assert dm.status_code == 409, dm.text
        assert dm.json()["error"]["code"] == "private_rooms_unavailable"
