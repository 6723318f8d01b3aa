"""Embeddings, responses and legacy completions, parsed by the openai SDK's own types."""

from __future__ import annotations

import httpx
from openai import AsyncOpenAI

from chorus_mock_openai import MOCK_TEXT
from chorus_mock_openai.testing import MockServer


async def test_embeddings_parse_as_floats_and_base64_alike(client: AsyncOpenAI) -> None:
    # The SDK asks for base64 by default and decodes it.
    answer = await client.embeddings.create(model="mock-gpt", input=["hello", "world!"])
    assert [e.index for e in answer.data] == [0, 1]
    assert all(len(e.embedding) == 16 for e in answer.data)
    assert answer.data[0].embedding != answer.data[1].embedding
    assert answer.usage.prompt_tokens == 2 + 2
    floats = await client.embeddings.create(
        model="mock-gpt", input="hello", encoding_format="float", dimensions=4
    )
    again = await client.embeddings.create(model="mock-gpt", input="hello", dimensions=4)
    # Deterministic; base64 carries float32.
    pairs = zip(floats.data[0].embedding, again.data[0].embedding, strict=True)
    assert all(abs(a - b) < 1e-6 for a, b in pairs)
    assert abs(sum(v * v for v in floats.data[0].embedding) - 1) < 1e-6  # unit length


async def test_responses_whole_and_streamed(client: AsyncOpenAI) -> None:
    whole = await client.responses.create(model="mock-gpt", input="say it", max_output_tokens=4)
    assert whole.output_text == " ".join(MOCK_TEXT.split()[:4])
    assert whole.status == "incomplete"
    assert whole.usage is not None
    assert (whole.usage.input_tokens, whole.usage.output_tokens) == (2, 4)
    stream = await client.responses.create(model="mock-gpt", input="say it", stream=True)
    kinds, text = [], ""
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            assert event.response.usage is not None
            assert event.response.usage.output_tokens == 16
            assert event.response.output_text == text
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"


async def test_legacy_completions_whole_and_streamed(client: AsyncOpenAI) -> None:
    whole = await client.completions.create(model="mock-gpt", prompt="once upon", max_tokens=3)
    assert whole.choices[0].text == " ".join(MOCK_TEXT.split()[:3])
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 3
    stream = await client.completions.create(
        model="mock-gpt", prompt="x", stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].text
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == " ".join(MOCK_TEXT.split()[:16])
    assert usage is not None
    assert usage.completion_tokens == 16


async def test_unknown_models_and_bad_bodies_get_openai_errors(
    http: httpx.AsyncClient, mock: MockServer
) -> None:
    missing = await http.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    bad = await http.post("/v1/responses", json={"model": "mock-gpt"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "input"
    assert len(mock.requests()) == 2
