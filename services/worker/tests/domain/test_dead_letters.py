"""Dead letters: what a row keeps, listing, and replays that refuse to repeat by accident."""

from __future__ import annotations

import datetime as dt

import pytest

from chorus_worker.domain.dead_letters import (
    DeadLetterNotFoundError,
    ReplayRefusedError,
    encode_arguments,
    list_dead_letters,
    record_dead_letter,
    replay,
)

from ..harness import Harness


def test_arguments_json_cannot_hold_are_kept_as_text() -> None:
    when = dt.date(2026, 1, 2)
    assert encode_arguments((1, "a", {"k": [1.5]}), {"flag": True}) == {
        "args": [1, "a", {"k": [1.5]}],
        "kwargs": {"flag": True},
    }
    assert encode_arguments((when, {1, 2}), {}) == {"args": ["2026-01-02", "{1, 2}"], "kwargs": {}}


async def test_record_list_and_replay_once(harness: Harness) -> None:
    first = await record_dead_letter(
        harness.sessions,
        job_id="welcome:1",
        function="send_welcome_email",
        args=[1],
        kwargs={},
        error="PermanentJobError: SMTP 550\n\ntraceback",
        tries=1,
    )
    second = await record_dead_letter(
        harness.sessions,
        job_id="j2",
        function="record_analytics",
        args=["x", {}],
        kwargs={},
        error="E" * 20_000,
        tries=10,
    )
    listed = await list_dead_letters(harness.sessions)
    assert [d.id for d in listed] == [second, first]
    assert len(listed[0].error) < 9000  # long tracebacks are cut in the middle
    assert [
        d.id for d in await list_dead_letters(harness.sessions, function="record_analytics")
    ] == [second]

    job_id = await replay(
        harness.sessions, harness.queue, first, queue_name=harness.settings.arq_queue_name
    )
    job = await harness.job(job_id).info()
    assert job is not None
    assert (job.function, job.args) == ("send_welcome_email", (1,))

    with pytest.raises(ReplayRefusedError, match="--force"):
        await replay(
            harness.sessions, harness.queue, first, queue_name=harness.settings.arq_queue_name
        )
    forced = await replay(
        harness.sessions,
        harness.queue,
        first,
        queue_name=harness.settings.arq_queue_name,
        force=True,
    )
    assert forced != job_id
    assert [d.id for d in await list_dead_letters(harness.sessions)] == [second]
    assert len(await list_dead_letters(harness.sessions, include_replayed=True)) == 2

    with pytest.raises(DeadLetterNotFoundError):
        await replay(
            harness.sessions, harness.queue, 999, queue_name=harness.settings.arq_queue_name
        )
