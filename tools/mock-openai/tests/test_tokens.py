"""Deterministic content and prompt token accounting."""

from __future__ import annotations

import orjson

from chorus_mock_openai.tokens import (
    WORDS,
    completion_text,
    count_prompt_tokens,
    encoded_token,
    token_text,
)


def test_tokens_are_words_with_leading_spaces_cycling() -> None:
    assert token_text(0) == WORDS[0]
    assert token_text(1) == " " + WORDS[1]
    assert token_text(len(WORDS)) == " " + WORDS[0]
    assert completion_text(3) == f"{WORDS[0]} {WORDS[1]} {WORDS[2]}"
    assert completion_text(0) == ""


def test_encoded_tokens_are_json_literals_of_the_text() -> None:
    for index in range(2 * len(WORDS)):
        assert orjson.loads(encoded_token(index)) == token_text(index)


def test_prompt_token_formula() -> None:
    # 3 priming + (3 + ceil(5/4)=2) + (3 + ceil(0/4)=0)
    assert count_prompt_tokens(["hello", ""]) == 3 + 5 + 3
    assert count_prompt_tokens(["abcd"]) == 3 + 3 + 1
