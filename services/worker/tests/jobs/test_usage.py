"""record_llm_usage: one row per gateway request, daily totals, idempotent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from chorus_schema.models import FailedJob, LlmUsageDaily, LlmUsageEvent, User

from ..harness import Harness, dead_lettered, running_worker


def _usage(request_id: str, **values: Any) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "request_id": request_id,
        "subject": "user:1",
        "user_id": None,
        "model": "mock-gpt",
        "provider": "mock",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "estimated": False,
        "outcome": "completed",
    }
    usage.update(values)
    return usage


async def test_usage_is_recorded_once_and_summed_per_day(harness: Harness) -> None:
    async with harness.sessions.begin() as session:
        user = User(email="u@example.com", full_name="U", password_hash="x")
        session.add(user)
    settings = harness.settings.model_copy(update={"keep_result": 0})
    async with running_worker(settings):
        first = _usage("req-1", user_id=str(user.id), subject=f"user:{user.id}")
        second = _usage(
            "req-2",
            subject=f"user:{user.id}",
            outcome="cut_off",
            key_id=7,
            team_id=3,
            cost_micros=40,
            cached_tokens=2,
        )
        for usage in (first, first, second):
            job = await harness.enqueue(
                "record_llm_usage", usage, _job_id=f"usage:{usage['request_id']}"
            )
            await harness.gone(job)
        # A user deleted since (or never known) is not a reason to lose the tokens.
        orphan = await harness.enqueue(
            "record_llm_usage", _usage("req-3", user_id=987654, subject="user:987654")
        )
        await harness.gone(orphan)
    async with harness.sessions() as session:
        events = {e.request_id: e for e in (await session.scalars(select(LlmUsageEvent))).all()}
        daily = (await session.scalars(select(LlmUsageDaily).order_by(LlmUsageDaily.subject))).all()
    assert set(events) == {"req-1", "req-2", "req-3"}
    assert events["req-1"].user_id == user.id
    assert events["req-2"].outcome == "cut_off"
    req2 = events["req-2"]
    assert (req2.key_id, req2.team_id, req2.cost_micros, req2.cached_tokens) == (7, 3, 40, 2)
    assert events["req-3"].user_id is None
    totals = [
        (d.subject, d.requests, d.prompt_tokens, d.completion_tokens, d.cost_micros) for d in daily
    ]
    assert totals == [(f"user:{user.id}", 2, 20, 10, 40), ("user:987654", 1, 10, 5, 0)]


async def test_malformed_usage_is_a_dead_letter(harness: Harness) -> None:
    async with running_worker(harness.settings):
        job = await harness.enqueue("record_llm_usage", _usage("req-x", prompt_tokens=-1))
        assert dead_lettered(await harness.outcome(job))
    async with harness.sessions() as session:
        [dead] = (await session.scalars(select(FailedJob))).all()
    assert dead.function == "record_llm_usage"
    assert "prompt_tokens" in dead.error


async def test_values_postgres_cannot_store_are_a_dead_letter_at_once(harness: Harness) -> None:
    """Token counts beyond the columns' range, or NUL in a name, fail the same way every
    time: no ten tries with backoff, a dead letter on the first."""
    async with running_worker(harness.settings):
        big = await harness.enqueue("record_llm_usage", _usage("req-big", prompt_tokens=2**31))
        nul = await harness.enqueue("record_llm_usage", _usage("req-nul", model="gpt\x00"))
        assert dead_lettered(await harness.outcome(big))
        assert dead_lettered(await harness.outcome(nul))
    async with harness.sessions() as session:
        found = (await session.scalars(select(FailedJob))).all()
    dead = {d.args["args"][0]["request_id"]: d for d in found}
    assert {d.tries for d in dead.values()} == {1}
    assert "prompt_tokens" in dead["req-big"].error
    assert "NUL" in dead["req-nul"].error
    assert dead["req-nul"].args["args"][0]["model"] == "gpt\\x00"
