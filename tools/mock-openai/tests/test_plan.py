"""How config, overrides, fault rules and the request combine into a plan."""

from __future__ import annotations

from chorus_mock_openai.config import MockConfig
from chorus_mock_openai.faults import Fault, FaultRule
from chorus_mock_openai.overrides import Overrides
from chorus_mock_openai.plan import make_plan
from chorus_mock_openai.validation import ChatRequest


def request(max_tokens: int | None = None) -> ChatRequest:
    """A parsed request with an optional token limit."""
    return ChatRequest(
        model="mock-gpt",
        stream=True,
        include_usage=False,
        max_tokens=max_tokens,
        last_user_text="",
        prompt_tokens=7,
    )


def test_defaults_come_from_config() -> None:
    plan = make_plan(MockConfig(ttft_ms=100, inter_token_ms=10), request(), Overrides(), None)

    assert (plan.tokens, plan.finish_reason, plan.fault) == (16, "stop", None)
    assert plan.ttft_s == 0.1
    assert plan.token_deadline(3) == 0.1 + 3 * 0.01
    assert plan.tokens_before_fault == 16


def test_max_tokens_cuts_with_length() -> None:
    plan = make_plan(MockConfig(), request(max_tokens=4), Overrides(tokens=10), None)

    assert (plan.tokens, plan.finish_reason) == (4, "length")


def test_rule_supplies_fault_and_its_after() -> None:
    rule = FaultRule(Fault.DROP, fault_after=5)

    plan = make_plan(MockConfig(), request(), Overrides(), rule)

    assert plan.fault is Fault.DROP
    assert plan.tokens_before_fault == 5


def test_fault_after_is_capped_at_the_length() -> None:
    plan = make_plan(
        MockConfig(), request(), Overrides(tokens=3, fault=Fault.DROP, fault_after=9), None
    )

    assert plan.tokens_before_fault == 3
