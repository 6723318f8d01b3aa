"""What a call costs, in integer micro-units of currency (1 USD = 1 000 000 micros).

Prices are configured per provider and public model (``LLM_PROVIDERS``' ``prices``), in
currency units per 1M tokens — so a token's price in micros is the configured number
itself. Costs are rounded up to a whole micro, once per call.

At admission a call is priced at its worst case: the prompt estimate and the completion
cap (``max_tokens``, or the gateway's default, which is then sent upstream so no answer
outruns it) at the dearest provider that may serve it (fallback may move it). When it
ends it is priced at what the serving provider reported (its cached prompt tokens at the
cached price), or at the gateway's own estimate for a cut-off stream.
"""

from __future__ import annotations

from chorus_gateway.domain.providers import ModelRoute, Price

__all__ = ["cost_micros", "worst_case_micros"]

_PER_MILLION = 1_000_000


def _scaled(price: float) -> int:
    # Micro-units per 1M tokens, as an integer: no float error accumulates per token.
    return round(price * _PER_MILLION)


def cost_micros(
    price: Price | None, *, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> int:
    """The cost of a call with these counts at ``price`` (0 when unpriced)."""
    if price is None:
        return 0
    cached = min(max(cached_tokens, 0), prompt_tokens)
    cached_price = price.cached_input if price.cached_input is not None else price.input
    total = (
        (prompt_tokens - cached) * _scaled(price.input)
        + cached * _scaled(cached_price)
        + completion_tokens * _scaled(price.output)
    )
    return -(-total // _PER_MILLION)


def worst_case_micros(route: ModelRoute, *, prompt_tokens: int, completion_tokens: int) -> int:
    """The most the call may cost at any provider of ``route``."""
    return max(
        (
            cost_micros(t.price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            for t in route.targets
        ),
        default=0,
    )
