"""Recognising an assistant mention."""

from __future__ import annotations

import pytest
from arq.connections import ArqRedis

from chorus_realtime.domain.assistant import Assistant, job_id


@pytest.mark.parametrize(
    ("text", "prompt"),
    [
        ("@assistant hi", "hi"),
        ("  @assistant, what is 2+2?", "what is 2+2?"),
        ("@assistant:\nsummarise", "summarise"),
        ("@assistant", None),
        ("@assistants hi", None),
        ("hi @assistant", None),
    ],
)
def test_prompt(text: str, prompt: str | None) -> None:
    # A client that never connects: recognising a mention needs no Redis.
    assistant = Assistant(ArqRedis(), mention="@assistant", queue_name="arq:queue")
    assert assistant.prompt(text) == prompt


def test_job_id_is_deterministic() -> None:
    assert job_id("lobby", "1-0") == "assistant:lobby:1-0"
