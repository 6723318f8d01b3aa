"""MockServer, the in-process server other packages' tests can use."""

from __future__ import annotations

from openai import OpenAI

from chorus_mock_openai import MockConfig
from chorus_mock_openai.testing import MockServer


def test_independent_server_with_its_own_config() -> None:
    with (
        MockServer(MockConfig(tokens=1, record_limit=2, models=("*",))) as server,
        OpenAI(base_url=server.api_base, api_key="sk-test", max_retries=0) as client,
    ):
        for model in ("a", "b", "c"):
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}]
            )
        records = server.settled()

    assert [r["model"] for r in records] == ["b", "c"]
    assert all(r["tokens_sent"] == 1 for r in records)
