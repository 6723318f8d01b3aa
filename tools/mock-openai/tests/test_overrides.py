"""Per-request overrides through headers and `[mock …]` directives."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from chorus_mock_openai import completion_text
from chorus_mock_openai.faults import Fault
from chorus_mock_openai.overrides import Overrides, from_directives, from_headers
from chorus_mock_openai.testing import MockServer


def user(text: str) -> list[Any]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]


def test_directive_parsing() -> None:
    overrides = from_directives(
        "Please answer. [mock ttft_ms=200 inter-token-ms=5.5 tokens=5 fault=error_mid_stream "
        "fault_after=1 retry_after=2 tag=abc]"
    )

    assert overrides == Overrides(
        ttft_ms=200.0,
        inter_token_ms=5.5,
        tokens=5,
        fault=Fault.ERROR_MID_STREAM,
        fault_after=1,
        retry_after_s=2.0,
        tag="abc",
    )


def test_later_directive_wins_and_text_without_one_is_empty() -> None:
    assert from_directives("[MOCK tokens=1] then [mock tokens=2]").tokens == 2
    assert from_directives("no directive [here]") == Overrides()


@pytest.mark.parametrize(
    "text",
    [
        "[mock tokens=-1]",
        "[mock tokens=many]",
        "[mock fault=explode]",
        "[mock speed=3]",
        "[mock x]",
    ],
)
def test_bad_directives_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the offending key
        from_directives(text)


def test_header_parsing() -> None:
    overrides = from_headers([("x-mock-tokens", "3"), ("x-mock-fault", "drop")])

    assert overrides == Overrides(tokens=3, fault=Fault.DROP)


def test_directive_takes_precedence_over_header() -> None:
    merged = from_directives("[mock tokens=7]").over(
        from_headers([("x-mock-tokens", "3"), ("x-mock-ttft-ms", "9")])
    )

    assert merged == Overrides(tokens=7, ttft_ms=9.0)


async def test_directive_through_the_sdk(client: AsyncOpenAI, mock: MockServer) -> None:
    completion = await client.chat.completions.create(
        model="mock-gpt", messages=user("Say hi [mock tokens=5 tag=directive]")
    )

    assert completion.choices[0].message.content == completion_text(5)
    (record,) = mock.requests(tag="directive")
    assert record["tokens_planned"] == 5


async def test_directive_in_content_parts(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="mock-gpt",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "[mock tokens=2]"}]},
        ],
    )

    assert completion.choices[0].message.content == completion_text(2)


async def test_only_the_last_user_message_counts(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="mock-gpt",
        messages=[
            {"role": "user", "content": "[mock tokens=2]"},
            {"role": "assistant", "content": "Chorus mock"},
            {"role": "user", "content": "again"},
        ],
    )

    assert completion.choices[0].message.content == completion_text(16)


async def test_headers_through_the_sdk(client: AsyncOpenAI) -> None:
    started = time.monotonic()
    completion = await client.chat.completions.create(
        model="mock-gpt",
        messages=user("hi"),
        extra_headers={"x-mock-tokens": "4", "x-mock-ttft-ms": "100"},
    )

    assert time.monotonic() - started >= 0.095
    assert completion.choices[0].message.content == completion_text(4)


async def test_directive_beats_header_end_to_end(client: AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="mock-gpt", messages=user("[mock tokens=3]"), extra_headers={"x-mock-tokens": "6"}
    )

    assert completion.choices[0].message.content == completion_text(3)


async def test_override_beats_runtime_config(client: AsyncOpenAI, mock: MockServer) -> None:
    mock.configure(tokens=9)

    default = await client.chat.completions.create(model="mock-gpt", messages=user("hi"))
    overridden = await client.chat.completions.create(
        model="mock-gpt", messages=user("[mock tokens=1]")
    )

    assert default.choices[0].message.content == completion_text(9)
    assert overridden.choices[0].message.content == completion_text(1)


async def test_invalid_override_is_a_bad_request(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="fault"):
        await client.chat.completions.create(
            model="mock-gpt", messages=user("hi"), extra_headers={"x-mock-fault": "explode"}
        )
