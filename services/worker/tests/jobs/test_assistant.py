"""answer_in_room against an OpenAI-compatible upstream (the mock stands in for the gateway).

The mock reads directives from the prompt (``[mock tokens=5 fault=hang]``), so each test
says in its message how the "gateway" should behave. ``test_assistant_gateway.py`` puts
the real gateway in between, and checks the codes its errors become.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chorus_common.events import room_channel
from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningMockOpenAI
from chorus_mock_openai import completion_text
from chorus_schema.models import FailedJob

from ..harness import Harness, dead_lettered, metric, running_worker


async def _ask(
    harness: Harness, prompt: str, room: str = "lobby", user_id: str = "7"
) -> tuple[str, Any]:
    """Post a message as realtime would, enqueue its answer, wait for the job."""
    message = await harness.bus.publish(
        room_channel(room), "message", {"message": prompt}, sender=user_id
    )
    job = await harness.enqueue(
        "answer_in_room",
        room,
        message.id,
        prompt,
        user_id,
        _job_id=f"assistant:{room}:{message.id}",
    )
    return message.id, await harness.outcome(job)


def _reply(
    events: list[dict[str, Any]], message_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    deltas = [e for e in events if e["type"] == "ai.delta" and e["data"]["reply_to"] == message_id]
    dones = [e for e in events if e["type"] == "ai.done" and e["data"]["reply_to"] == message_id]
    return deltas, dones


async def test_an_answer_streams_as_deltas_then_one_done_with_usage(
    harness: Harness, mock_openai: RunningMockOpenAI
) -> None:
    completed = metric("chorus_worker_assistant_replies_total", outcome="completed")
    async with running_worker(harness.settings):
        prompt = "@assistant what is chorus? [mock tokens=5 inter_token_ms=300 tag=stream-1]"
        message_id, result = await _ask(harness, prompt)

    assert result["status"] == "answered"
    events = await harness.room_events("lobby")
    deltas, [done] = _reply(events, message_id)
    assert [e["type"] for e in events][-len(deltas) - 1 :] == ["ai.delta"] * len(deltas) + [
        "ai.done"
    ]
    assert len(deltas) >= 2  # tokens 300 ms apart are not held back into one event
    assert [d["data"]["index"] for d in deltas] == list(range(len(deltas)))
    assert {d["from"] for d in deltas} == {"assistant"}
    assert "".join(d["data"]["delta"] for d in deltas) == completion_text(5)
    assert done["from"] == "assistant"
    assert done["data"]["message"] == completion_text(5)
    assert done["data"]["usage"]["completion_tokens"] == 5
    assert done["data"]["usage"]["total_tokens"] == done["data"]["usage"]["prompt_tokens"] + 5
    assert "error" not in done["data"]
    assert metric("chorus_worker_assistant_replies_total", outcome="completed") == completed + 1

    # What the "gateway" was asked: our model, streamed with usage, the mention stripped.
    records = httpx.get(f"{mock_openai.url}/_mock/requests", params={"tag": "stream-1"}).json()[
        "data"
    ]
    [record] = records
    assert (record["model"], record["stream"], record["include_usage"]) == ("mock-gpt", True, True)


async def test_tokens_arriving_together_are_sent_as_few_events(harness: Harness) -> None:
    # With a minute between events, what has arrived goes out at once and everything after
    # it waits for the end of the answer: one or two events, however the tokens were timed.
    settings = harness.settings.model_copy(update={"assistant_delta_interval": 60.0})
    async with running_worker(settings):
        message_id, _ = await _ask(harness, "@assistant tell me more [mock tokens=30]")
    deltas, [done] = _reply(await harness.room_events("lobby"), message_id)
    assert [d["data"]["index"] for d in deltas] in ([0], [0, 1])
    assert (
        "".join(d["data"]["delta"] for d in deltas)
        == completion_text(30)
        == done["data"]["message"]
    )


async def test_a_gateway_error_before_the_stream_still_ends_the_reply(harness: Harness) -> None:
    failed = metric("chorus_worker_assistant_replies_total", outcome="error")
    async with running_worker(harness.settings):
        message_id, result = await _ask(harness, "@assistant hi [mock fault=error_before_start]")
    assert result["status"] == "failed"
    deltas, [done] = _reply(await harness.room_events("lobby"), message_id)
    assert deltas == []
    assert done["data"]["message"] == ""
    assert done["data"]["error"]["code"] == "gateway_error"
    assert metric("chorus_worker_assistant_replies_total", outcome="error") == failed + 1


async def test_an_error_mid_stream_ends_the_reply_with_what_arrived(harness: Harness) -> None:
    async with running_worker(harness.settings):
        message_id, _ = await _ask(
            harness, "@assistant hi [mock tokens=8 fault=error_mid_stream fault_after=3]"
        )
    deltas, [done] = _reply(await harness.room_events("lobby"), message_id)
    assert "".join(d["data"]["delta"] for d in deltas) == completion_text(3)
    assert done["data"]["message"] == completion_text(3)
    assert done["data"]["error"]["code"] == "gateway_error"


async def test_a_silent_gateway_ends_the_reply_instead_of_hanging(harness: Harness) -> None:
    settings = harness.settings.model_copy(update={"assistant_idle_timeout": 0.5})
    async with running_worker(settings):
        before_start, _ = await _ask(harness, "@assistant hi [mock fault=hang]")
        mid_stream, _ = await _ask(
            harness, "@assistant hi [mock tokens=6 fault=hang_mid_stream fault_after=2]"
        )
    events = await harness.room_events("lobby")
    _, [done] = _reply(events, before_start)
    assert done["data"]["error"]["code"] == "gateway_timeout"
    _, [done] = _reply(events, mid_stream)
    assert done["data"]["error"]["code"] == "gateway_timeout"
    assert done["data"]["message"] == completion_text(2)


async def test_an_answer_that_takes_too_long_is_cut_off(harness: Harness) -> None:
    settings = harness.settings.model_copy(update={"assistant_timeout": 0.5})
    async with running_worker(settings):
        message_id, _ = await _ask(harness, "@assistant hi [mock tokens=50 inter_token_ms=100]")
    deltas, [done] = _reply(await harness.room_events("lobby"), message_id)
    assert done["data"]["error"]["code"] == "timeout"
    assert done["data"]["message"] == "".join(d["data"]["delta"] for d in deltas)


async def test_rate_limits_are_explained(harness: Harness) -> None:
    async with running_worker(harness.settings):
        message_id, _ = await _ask(harness, "@assistant hi [mock fault=rate_limit]")
    _, [done] = _reply(await harness.room_events("lobby"), message_id)
    assert done["data"]["error"]["code"] == "rate_limited"


async def test_a_redelivered_job_does_not_answer_twice(harness: Harness) -> None:
    async with running_worker(harness.settings):
        message_id, first = await _ask(harness, "@assistant once [mock tokens=3]")
        again = await harness.enqueue("answer_in_room", "lobby", message_id, "@assistant once", "7")
        second = await harness.outcome(again)
    assert second == {"status": "already_answered", "event_id": first["event_id"]}
    _, dones = _reply(await harness.room_events("lobby"), message_id)
    assert len(dones) == 1


async def test_an_empty_question_gets_a_polite_reply(
    harness: Harness, mock_openai: RunningMockOpenAI
) -> None:
    async with running_worker(harness.settings):
        message_id, result = await _ask(harness, "  @Assistant  ")
    assert result["error"]["code"] == "empty_prompt"
    _, [done] = _reply(await harness.room_events("lobby"), message_id)
    assert done["data"]["error"]["code"] == "empty_prompt"


async def test_a_job_for_an_impossible_room_is_a_dead_letter(harness: Harness) -> None:
    async with running_worker(harness.settings):
        job = await harness.enqueue("answer_in_room", "no spaces allowed", "1-0", "hi", "7")
        bad_id = await harness.enqueue("answer_in_room", "lobby", "not-an-id", "hi", "7")
        assert dead_lettered(await harness.outcome(job))
        assert dead_lettered(await harness.outcome(bad_id))
    async with harness.sessions() as session:
        assert len((await session.scalars(select(FailedJob))).all()) == 2


async def test_what_the_gateway_said_goes_to_the_log_not_into_the_room(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A room is read by everyone in it: provider bodies and connection errors stay internal."""
    provider_says = "The server had an error while processing your request"
    closed_port = free_port()
    unreachable = harness.settings.model_copy(
        update={"llm_gateway_url": f"http://127.0.0.1:{closed_port}"}
    )
    async with running_worker(harness.settings):
        before, _ = await _ask(harness, "@assistant hi [mock fault=error_before_start]")
        mid, _ = await _ask(harness, "@assistant hi [mock tokens=6 fault=error_mid_stream]")
    async with running_worker(unreachable):
        refused, _ = await _ask(harness, "@assistant hi")
    events = await harness.room_events("lobby")
    errors = {}
    for message_id in (before, mid, refused):
        _, [done] = _reply(events, message_id)
        errors[message_id] = done["data"]["error"]
    assert [e["code"] for e in errors.values()] == [
        "gateway_error",
        "gateway_error",
        "gateway_unreachable",
    ]
    for error in errors.values():
        shown = error["message"]
        assert provider_says not in shown
        assert "500" not in shown
        assert str(closed_port) not in shown
        assert "Error" not in shown  # no exception class names either
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("chorus"))
    assert provider_says in logged
    assert "InternalServerError 500" in logged
    assert "APIConnectionError" in logged


async def test_a_finished_answer_is_no_longer_pending_for_its_user(harness: Harness) -> None:
    message = await harness.bus.publish(
        room_channel("lobby"), "message", {"message": "@assistant hi"}, sender="7"
    )
    job_id = f"assistant:lobby:{message.id}"
    await harness.queue.zadd("chorus:assistant:pending:7", {job_id: 2**40, "another": 2**40})
    async with running_worker(harness.settings):
        job = await harness.enqueue(
            "answer_in_room",
            "lobby",
            message.id,
            "@assistant hi [mock tokens=2]",
            "7",
            _job_id=job_id,
        )
        assert (await harness.outcome(job))["status"] == "answered"
    assert await harness.queue.zrange("chorus:assistant:pending:7", 0, -1) == [b"another"]
