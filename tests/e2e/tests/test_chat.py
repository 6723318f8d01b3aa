"""Journey 2: three users in one room across both realtime replicas.

Messages arrive in one order everywhere, presence is right, and history comes back from
the api after persistence — including messages the Redis history window no longer holds.
"""

from __future__ import annotations

import asyncio
import os
from functools import partial

import httpx

from chorus_client import RoomClient
from chorus_devstack.stack import Stack
from chorus_e2e.accounts import sign_up
from chorus_e2e.chat import has_messages, history, metric_value, send_paced, stream_key
from chorus_e2e.polling import eventually

#: Realtime keeps ~100 events per room in this stack (conftest): 255 outgrow it.
PER_USER = 85


async def test_three_users_chat_across_replicas_in_one_order_with_full_history(
    stack: Stack, ingress: str, http: httpx.AsyncClient, ops: httpx.AsyncClient
) -> None:
    room = f"chat-{os.urandom(4).hex()}"
    alice, bob, carol = [await sign_up(http, n) for n in ("alice", "bob", "carol")]
    clients = [RoomClient([ingress], room, u.token) for u in (alice, bob, carol)]
    for client in clients:
        await client.start()
        await client.wait_subscribed()
    try:
        # The ingress spread the three sockets over both replicas (no stickiness).
        for replica in stack.replicas("realtime"):
            await eventually(
                partial(ops.get, f"{stack.url(replica)}/metrics"),
                until=lambda m: (
                    metric_value(m.text, "chorus_realtime_connections", '{transport="ws"}') >= 1
                ),
                what=f"a WebSocket on {replica}",
            )

        # Presence is the same from any replica: three distinct members.
        presence = await eventually(
            lambda: http.get(f"/rooms/{room}/presence", headers=alice.auth),
            until=lambda r: r.json()["count"] == 3,
            what="three members present",
        )
        assert {m["user_id"] for m in presence.json()["members"]} == {
            str(u.id) for u in (alice, bob, carol)
        }
        # Alice heard the three joins with the room growing 1, 2, 3 (count and event are one
        # step in Redis, whichever replica each socket landed on).
        await clients[0].wait_for(lambda: len(clients[0].of_type("join")) == 3)
        joins = clients[0].of_type("join")
        assert [e["data"]["count"] for e in joins] == [1, 2, 3]
        assert {e["data"]["user_id"] for e in joins} == {str(u.id) for u in (alice, bob, carol)}

        texts = {
            u.id: [f"{name}-{i}" for i in range(PER_USER)]
            for u, name in ((alice, "alice"), (bob, "bob"), (carol, "carol"))
        }
        await asyncio.gather(
            *(send_paced(c, texts[u.id]) for c, u in zip(clients, (alice, bob, carol), strict=True))
        )
        total = 3 * PER_USER
        for client in clients:
            await client.wait_for(has_messages(client, total), timeout=30)

        # One order everywhere: the stream's; each sender's own messages in sending order.
        orders = [[e["id"] for e in c.events if e["type"] == "message"] for c in clients]
        assert orders[0] == orders[1] == orders[2]
        assert orders[0] == sorted(orders[0], key=stream_key)
        assert len(set(orders[0])) == total
        seen = clients[1].messages()
        for user in (alice, bob, carol):
            assert [t for t in seen if t in set(texts[user.id])] == texts[user.id]
        senders = {
            e["data"]["message"]: e["from"] for e in clients[2].events if e["type"] == "message"
        }
        assert all(senders[t] == str(u.id) for u in (alice, bob, carol) for t in texts[u.id])

        # History: every message, persisted by the worker, served by the api in stream order.
        persisted = await eventually(
            lambda: history(http, room, bob.token),
            until=lambda items: len(items) >= total,
            timeout=30,
            what="all messages persisted",
        )
        assert [m["id"] for m in persisted] == orders[0]
        assert [m["data"]["message"] for m in persisted] == clients[0].messages()

        # The oldest messages have left Redis's window: resuming from the first one is a
        # miss, and the api is where they are.
        first_id = orders[0][0]
        async with RoomClient([ingress], room, carol.token, since=first_id) as late:
            subscribed = await late.wait_subscribed()
        assert subscribed["recovering"] is True
        assert subscribed["recovered"] is False
        older = await http.get(
            f"/api/rooms/{room}/messages",
            params={"before": orders[0][1], "limit": 5},
            headers=carol.auth,
        )
        assert [m["id"] for m in older.json()["items"]] == [first_id]

        # Carol leaves: the others see it, presence follows.
        await clients[2].stop()
        await clients[0].wait_for(
            lambda: any(
                e["type"] == "leave" and e["data"]["user_id"] == str(carol.id)
                for e in clients[0].events
            )
        )
        leave = [e for e in clients[0].events if e["type"] == "leave"][-1]
        assert leave["data"]["count"] == 2
        presence = await http.get(f"/rooms/{room}/presence", headers=bob.auth)
        assert presence.json()["count"] == 2
    finally:
        for client in clients:
            await client.stop()
