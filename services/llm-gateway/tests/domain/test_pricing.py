"""Costs in integer micro-units: cached prompt tokens, rounding, the dearest provider."""

from __future__ import annotations

from chorus_gateway.domain.pricing import cost_micros, worst_case_micros
from chorus_gateway.domain.providers import ModelRoute, Price, Target


def test_cost_uses_the_cached_price_for_cached_prompt_tokens_and_rounds_up_once() -> None:
    price = Price(input=2.5, output=10.0, cached_input=1.25)
    # 1000 prompt (400 cached) and 100 completion tokens: 600*2.5 + 400*1.25 + 100*10.
    assert cost_micros(price, prompt_tokens=1000, completion_tokens=100, cached_tokens=400) == 3000
    # 3 tokens at 0.15 per 1M = 0.45 micros: one micro, not zero.
    cheap = Price(input=0.15, output=0.6)
    assert cost_micros(cheap, prompt_tokens=3, completion_tokens=0) == 1
    assert cost_micros(None, prompt_tokens=10**6, completion_tokens=10**6) == 0
    # A cached count above the prompt (a provider's oddity) is capped at the prompt.
    assert cost_micros(price, prompt_tokens=10, completion_tokens=0, cached_tokens=50) == 13


def test_the_worst_case_is_priced_at_the_dearest_provider_of_the_model() -> None:
    route = ModelRoute(
        "m",
        "m",
        (
            Target("cheap", "m", 1, 0, Price(input=1, output=1)),
            Target("dear", "m", 1, 1, Price(input=1, output=5)),
            Target("unpriced", "m", 1, 2, None),
        ),
    )
    assert worst_case_micros(route, prompt_tokens=10, completion_tokens=100) == 510
