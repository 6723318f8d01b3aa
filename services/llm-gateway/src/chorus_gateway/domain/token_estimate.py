"""Token counts the gateway estimates itself, only where no provider count exists.

Two uses: the admission reservation (the prompt is estimated before any provider has
seen it; the real count replaces it when usage arrives), and billing a completion whose
provider sent no usage (a stream cut off by the client, a dropped stream, a server that
ignores ``stream_options.include_usage``). A count the provider sent is always used as
is, zero included.

The approximation is OpenAI's published rule of thumb for English text, one token per
four characters, with the chat framing of the cookbook's ``num_tokens_from_messages``:
3 tokens priming the reply, plus per message 3 tokens of framing and ⌈characters / 4⌉.
A streamed completion is estimated as the larger of ⌈characters / 4⌉ and the number of
content chunks delivered (OpenAI, vLLM, llama.cpp and Ollama stream about one token per
chunk), so an estimate errs towards what the client actually received.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "estimate_completion_tokens",
    "estimate_input_tokens",
    "estimate_prompt_tokens",
    "estimate_text_tokens",
]

_CHARS_PER_TOKEN = 4
_PRIMING = 3
_PER_MESSAGE = 3


def estimate_text_tokens(text_length: int) -> int:
    """⌈characters / 4⌉."""
    return -(-text_length // _CHARS_PER_TOKEN)


def _text_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text)
        return total
    return 0


def estimate_prompt_tokens(messages: list[Any]) -> int:
    """Prompt tokens of chat ``messages`` by the cookbook's framing and ⌈chars / 4⌉."""
    total = _PRIMING
    for message in messages:
        if isinstance(message, dict):
            total += _PER_MESSAGE + estimate_text_tokens(_text_length(message.get("content")))
    return total


def estimate_input_tokens(value: Any) -> int:
    """Tokens of a prompt or input that is not chat messages (legacy ``prompt``, embeddings'
    and responses' ``input``): ⌈characters / 4⌉ per text, one per token id given."""
    if isinstance(value, str):
        return estimate_text_tokens(len(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return 1
    if isinstance(value, list):
        return sum(estimate_input_tokens(item) for item in value)
    if isinstance(value, dict):
        return sum(estimate_input_tokens(v) for k, v in value.items() if k in ("text", "content"))
    return 0


def estimate_completion_tokens(text_length: int, content_chunks: int) -> int:
    """A completion's tokens from its delivered text and chunk count."""
    return max(estimate_text_tokens(text_length), content_chunks)
