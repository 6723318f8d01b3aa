"""Deterministic completion content and token accounting.

Content is the words of `MOCK_TEXT`, cycling: token 0 is the first word, token
i > 0 is word `i mod len(WORDS)` with a leading space. The same request always
yields the same text, so a test can compare a direct call with one made
through a proxy byte for byte.

Prompt tokens are counted the way OpenAI's cookbook estimates chat prompts:
3 tokens of priming for the reply, plus for each message 3 tokens of framing
and one token per 4 characters of its text (rounded up).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import orjson

__all__ = [
    "MOCK_TEXT",
    "WORDS",
    "completion_text",
    "count_prompt_tokens",
    "encoded_token",
    "token_text",
]

MOCK_TEXT = (
    "Chorus mock streaming reply: the quick brown fox jumps over the lazy dog while "
    "a naïve proxy forwards every chunk, byte for byte, from upstream to client. "
    "Latency matters; so do usage counts, clean cancellation and honest errors."
)
WORDS: tuple[str, ...] = tuple(MOCK_TEXT.split())

# JSON string literals, encoded once: streaming a token is then one concatenation.
_FIRST = orjson.dumps(WORDS[0])
_SPACED: tuple[bytes, ...] = tuple(orjson.dumps(" " + word) for word in WORDS)
_CYCLE = len(WORDS)

_PRIMING_TOKENS = 3
_PER_MESSAGE_TOKENS = 3
_CHARS_PER_TOKEN = 4


def token_text(index: int) -> str:
    """The text of completion token `index` (0-based)."""
    word = WORDS[index % _CYCLE]
    return word if index == 0 else " " + word


def encoded_token(index: int) -> bytes:
    """Token `index` as a JSON string literal, ready to splice into a chunk."""
    return _FIRST if index == 0 else _SPACED[index % _CYCLE]


@lru_cache(maxsize=256)
def completion_text(tokens: int) -> str:
    """The full completion text for `tokens` tokens."""
    return "".join(token_text(index) for index in range(tokens))


def count_prompt_tokens(message_texts: Iterable[str]) -> int:
    """Deterministic prompt-token count for messages with the given texts."""
    total = _PRIMING_TOKENS
    for text in message_texts:
        total += _PER_MESSAGE_TOKENS - (-len(text) // _CHARS_PER_TOKEN)
    return total
