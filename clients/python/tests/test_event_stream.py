"""EventStreamClient against a real replica: notifications, resume, final refusals."""

from __future__ import annotations

from chorus_client import Backoff, EventStreamClient
from chorus_common.events import EventBus, user_channel
from chorus_common.tokens import TokenService

from .conftest import Replica

FAST = Backoff(base=0.05, cap=0.2)


async def test_notifications_arrive_and_resume_after_a_crash(
    replica: Replica, tokens: TokenService, bus: EventBus
) -> None:
    user = 2_000_001
    channel = user_channel(user)
    async with EventStreamClient([replica.url], tokens.issue(user), backoff=FAST) as stream:
        await stream.wait_for(lambda: bool(stream.of_type("subscribed")))
        await bus.publish(channel, "order.created", {"order": {"id": 1}}, sender="api")
        await stream.wait_for(lambda: len(stream.events) == 1)
        replica.kill()
        await stream.wait_for(lambda: bool(stream.closes))
        await bus.publish(channel, "order.updated", {"order": {"id": 1}}, sender="api")
        replica.start()
        await stream.wait_for(lambda: len(stream.events) == 2, timeout=30)
    assert [e["type"] for e in stream.events] == ["order.created", "order.updated"]
    assert stream.of_type("subscribed")[1]["recovered"] is True
    assert stream.connects == 2
    assert stream.statuses[-1] == 200


async def test_a_refused_token_is_final(replica: Replica) -> None:
    forged = TokenService(secret="another-secret-that-is-long-enough-too", issuer="chorus")
    client = EventStreamClient([replica.url], forged.issue(3), backoff=FAST)
    try:
        await client.start()
    except BaseException:  # the loop ended before any connection: that is the point
        pass
    finally:
        await client.stop()
    assert client.statuses == [401]
    assert client.closes[0].code == 1008
    assert client.connects == 0
