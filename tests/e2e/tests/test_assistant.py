"""Journey 3: `@assistant …` in a room → tokens stream to every member → final message in
history → the tokens are counted for the user who asked."""

from __future__ import annotations

import os

import asyncpg
import httpx

from chorus_client import Frame, RoomClient
from chorus_e2e.accounts import sign_up
from chorus_e2e.chat import answered, history
from chorus_e2e.polling import eventually
from chorus_mock_openai import completion_text


def reply_to(client: RoomClient, message_id: str, kind: str) -> list[Frame]:
    """``ai.delta`` or ``ai.done`` events answering ``message_id``."""
    return [e for e in client.events if e["type"] == kind and e["data"]["reply_to"] == message_id]


async def test_the_assistant_answers_every_member_and_bills_the_asker(
    ingress: str, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    room = f"ask-{os.urandom(4).hex()}"
    asker, watcher = await sign_up(http, "asker"), await sign_up(http, "watcher")
    async with (
        RoomClient([ingress], room, asker.token) as mine,
        RoomClient([ingress], room, watcher.token) as theirs,
    ):
        await mine.wait_subscribed()
        await theirs.wait_subscribed()
        await mine.say("@assistant what is Chorus?")
        await mine.wait_for(lambda: bool(mine.messages()))
        [question] = [e for e in mine.events if e["type"] == "message"]
        for client in (mine, theirs):
            await client.wait_for(answered(client, question["id"]), timeout=30)

    expected = completion_text(16)  # the mock upstream's answer, tokens as configured
    for client in (mine, theirs):
        deltas = reply_to(client, question["id"], "ai.delta")
        [done] = reply_to(client, question["id"], "ai.done")
        assert deltas, "tokens are streamed before the final message"
        assert [d["data"]["index"] for d in deltas] == list(range(len(deltas)))
        assert "".join(d["data"]["delta"] for d in deltas) == expected
        assert done["data"]["message"] == expected
        assert "error" not in done["data"]
        assert done["from"] == "assistant"
        assert done["data"]["usage"]["completion_tokens"] == 16
        # The answer comes after every token, and after the question.
        ids = [e["id"] for e in client.events]
        assert ids.index(question["id"]) < ids.index(deltas[0]["id"]) < ids.index(done["id"])

    persisted = await eventually(
        lambda: history(http, room, watcher.token),
        until=lambda items: any(m["type"] == "ai.done" for m in items),
        what="the answer persisted",
    )
    assert [(m["type"], m["from"]) for m in persisted] == [
        ("message", str(asker.id)),
        ("ai.done", "assistant"),
    ]
    assert persisted[1]["data"]["message"] == expected

    usage = await eventually(
        lambda: db.fetch(
            "SELECT subject, model, completion_tokens, outcome FROM llm_usage_events "
            "WHERE user_id = $1",
            asker.id,
        ),
        what="the assistant's usage recorded for the asker",
    )
    # The alias is resolved: the worker asked for "assistant", "mock-gpt" answered.
    assert [tuple(r) for r in usage] == [("key:worker", "mock-gpt", 16, "completed")]
