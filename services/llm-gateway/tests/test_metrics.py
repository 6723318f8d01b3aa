"""Labelled series exist at zero before anything happens (so rate() sees the first event)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from chorus_gateway.domain.providers import Catalog, ProvidersConfig
from chorus_gateway.metrics import declare_series


def test_every_configured_series_is_exported_at_zero_from_the_start() -> None:
    config = ProvidersConfig.model_validate(
        {
            "providers": [
                {"name": "decl-a", "base_url": "http://a/v1", "models": ["decl-m"]},
                {"name": "decl-b", "base_url": "http://b/v1", "models": ["decl-m"], "priority": 1},
            ],
            "aliases": {"decl-alias": "decl-m"},
        }
    )
    catalog = Catalog(config)
    assert catalog.served() == {"decl-m": ["decl-a", "decl-b"], "decl-alias": ["decl-a", "decl-b"]}

    declare_series(catalog.served())

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    for model in ("decl-m", "decl-alias"):
        for provider in ("decl-a", "decl-b"):
            assert sample("chorus_gateway_ttft_seconds_count", model=model, provider=provider) == 0
            assert (
                sample(
                    "chorus_gateway_time_per_output_token_seconds_count",
                    model=model,
                    provider=provider,
                )
                == 0
            )
        assert sample("chorus_gateway_tokens_total", direction="completion", model=model) == 0
    assert sample("chorus_gateway_upstream_errors_total", provider="decl-a", kind="dropped") == 0
    assert (
        sample("chorus_gateway_fallbacks_total", from_provider="decl-a", to_provider="decl-b") == 0
    )
    for limit in ("requests", "tokens", "concurrency"):
        assert sample("chorus_gateway_ratelimit_rejections_total", limit=limit) is not None
