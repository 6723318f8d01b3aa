"""Provider configuration (``LLM_PROVIDERS``) and the model catalogue built from it.

``LLM_PROVIDERS`` is JSON, or the path of a mounted YAML or JSON file. Either a list of
providers, or an object ``{"providers": [...], "aliases": {"assistant": "mock-gpt"}}``.
A provider::

    name: openai                       # [a-z0-9_.-], unique; a metrics label
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY        # or api_key: <literal>; neither = no auth (local)
    models: [gpt-4o-mini]              # or {public-name: upstream-model-id}
    weight: 1                          # share among providers of the same priority
    priority: 0                        # lower is tried first; higher ones are fallbacks
    timeouts: {connect: 5, ttft: 60, idle: 60, total: 600}   # seconds
    max_connections: 1000              # HTTP pool towards this provider
    max_tokens_field: max_tokens       # or max_completion_tokens (OpenAI o-series)
    headers: {}                        # extra request headers (e.g. OpenRouter's)
    prices:                            # per public model, currency units per 1M tokens
      gpt-4o-mini: {input: 0.15, output: 0.60, cached_input: 0.075}

An alias names a public model (``assistant`` → ``mock-gpt``): the worker asks for
``assistant`` and operators choose what answers it.

An explicitly empty list (``[]``) is a gateway with no provider yet (a fresh install): it
starts, lists no model and answers 404 ``model_not_found``. An unset ``LLM_PROVIDERS`` is
still refused: it is a forgotten setting, not a choice.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

__all__ = [
    "OTHER_MODEL",
    "Catalog",
    "ModelRoute",
    "Price",
    "ProviderConfig",
    "ProvidersConfig",
    "ProvidersConfigError",
    "Target",
    "Timeouts",
    "load_providers",
]

#: The metrics label of a model nobody configured (labels stay bounded).
OTHER_MODEL = "other"
#: Sent as the bearer token to providers configured without a key (local servers).
NO_KEY = "unused"


class ProvidersConfigError(ValueError):
    """``LLM_PROVIDERS`` cannot be read or is invalid; the message says where."""


class Timeouts(BaseModel):
    """Seconds allowed for each phase of an upstream call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect: float = Field(default=5.0, gt=0)
    #: From sending the request to the first streamed chunk (headers included).
    ttft: float = Field(default=60.0, gt=0)
    #: Between two chunks once the stream has started.
    idle: float = Field(default=60.0, gt=0)
    #: The whole call, however steadily it streams.
    total: float = Field(default=600.0, gt=0)


class Price(BaseModel):
    """What a model costs at one provider, in currency units (e.g. USD) per 1M tokens.

    ``cached_input`` applies to the prompt tokens the provider reports as served from
    its cache (``prompt_tokens_details.cached_tokens``); it defaults to ``input``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, le=1_000_000)
    output: float = Field(ge=0, le=1_000_000)
    cached_input: float | None = Field(default=None, ge=0, le=1_000_000)


class ProviderConfig(BaseModel):
    """One OpenAI-compatible upstream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
    base_url: str = Field(pattern=r"^https?://")
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    models: dict[str, str]
    weight: float = Field(default=1.0, gt=0)
    priority: int = 0
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(default=1000, ge=1)
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    headers: dict[str, str] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _models_as_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            models = data["models"]
            if not all(isinstance(m, str) for m in models):
                msg = "models must be a list of model ids or a mapping of public name to id"
                raise ValueError(msg)
            data = {**data, "models": {m: m for m in models}}
        return data

    @model_validator(mode="after")
    def _check(self) -> ProviderConfig:
        if not self.models:
            msg = f"provider {self.name!r} serves no models"
            raise ValueError(msg)
        if self.api_key is not None and self.api_key_env is not None:
            msg = f"provider {self.name!r}: set api_key or api_key_env, not both"
            raise ValueError(msg)
        unknown = sorted(set(self.prices) - set(self.models))
        if unknown:
            msg = f"provider {self.name!r}: prices for models it does not serve: {unknown}"
            raise ValueError(msg)
        return self


class ProvidersConfig(BaseModel):
    """Every provider and the aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: list[ProviderConfig]
    aliases: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ProvidersConfig:
        names = [p.name for p in self.providers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            msg = f"duplicate provider names: {duplicates}"
            raise ValueError(msg)
        served = {m for p in self.providers for m in p.models}
        for alias, target in self.aliases.items():
            if alias in served:
                msg = f"alias {alias!r} shadows a model a provider serves"
                raise ValueError(msg)
            if target not in served:
                msg = f"alias {alias!r} points to {target!r}, which no provider serves"
                raise ValueError(msg)
        return self


def load_providers(value: str) -> ProvidersConfig:
    """Parse ``LLM_PROVIDERS``: inline JSON, or the path of a YAML/JSON file."""
    text = value.strip()
    if not text:
        msg = "LLM_PROVIDERS is empty: configure at least one provider"
        raise ProvidersConfigError(msg)
    source = "LLM_PROVIDERS"
    if text[0] in "[{":
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"LLM_PROVIDERS is not valid JSON: {exc}"
            raise ProvidersConfigError(msg) from None
    else:
        path = Path(text)
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            msg = f"LLM_PROVIDERS names a file that cannot be read: {exc}"
            raise ProvidersConfigError(msg) from None
        except yaml.YAMLError as exc:
            msg = f"{path} is not valid YAML/JSON: {exc}"
            raise ProvidersConfigError(msg) from None
    if isinstance(data, list):
        data = {"providers": data}
    try:
        return ProvidersConfig.model_validate(data)
    except ValidationError as exc:
        msg = f"invalid provider configuration in {source}: {exc}"
        raise ProvidersConfigError(msg) from None


def resolve_api_key(provider: ProviderConfig, environ: Mapping[str, str]) -> str:
    """The key to send to ``provider`` (from the config, or the env var/secret it names)."""
    if provider.api_key is not None:
        return provider.api_key.get_secret_value()
    if provider.api_key_env is not None:
        key = environ.get(provider.api_key_env, "")
        if not key:
            msg = f"provider {provider.name!r}: {provider.api_key_env} is unset or empty"
            raise ProvidersConfigError(msg)
        return key
    return NO_KEY


@dataclass(frozen=True, slots=True)
class Target:
    """A provider able to serve a model, and the model id it knows it by."""

    provider: str
    upstream_model: str
    weight: float
    priority: int
    #: None when the configuration gives no price (the call then costs nothing).
    price: Price | None = None


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """What a requested model resolves to."""

    #: The name the client asked for (a model or an alias) — the metrics label.
    requested: str
    #: The public model it means (differs from ``requested`` for an alias).
    model: str
    targets: tuple[Target, ...]

    def ordered(self, rng: random.Random) -> list[Target]:
        """Targets to try: by priority, weighted-random order within a priority."""
        by_priority: dict[int, list[Target]] = {}
        for target in self.targets:
            by_priority.setdefault(target.priority, []).append(target)
        order: list[Target] = []
        for priority in sorted(by_priority):
            group = list(by_priority[priority])
            while group:
                pick = rng.choices(range(len(group)), weights=[t.weight for t in group])[0]
                order.append(group.pop(pick))
        return order


class Catalog:
    """Public model names (models and aliases) and who serves them."""

    def __init__(self, config: ProvidersConfig) -> None:
        self.config = config
        self.providers = {p.name: p for p in config.providers}
        targets: dict[str, list[Target]] = {}
        for p in config.providers:
            for public, upstream in p.models.items():
                targets.setdefault(public, []).append(
                    Target(p.name, upstream, p.weight, p.priority, p.prices.get(public))
                )
        self._routes: dict[str, ModelRoute] = {
            name: ModelRoute(name, name, tuple(ts)) for name, ts in targets.items()
        }
        for alias, model in config.aliases.items():
            self._routes[alias] = ModelRoute(alias, model, self._routes[model].targets)

    def unpriced(self) -> list[str]:
        """``model@provider`` of every model served without a price."""
        return sorted(
            f"{name}@{t.provider}"
            for name, route in self._routes.items()
            if route.model == name
            for t in route.targets
            if t.price is None
        )

    def resolve(self, requested: str) -> ModelRoute | None:
        """The route of a model or alias; None when nobody serves it."""
        return self._routes.get(requested)

    def served(self) -> dict[str, list[str]]:
        """Every model and alias (its metrics label) → the providers that serve it."""
        return {name: [t.provider for t in route.targets] for name, route in self._routes.items()}

    def label(self, requested: str) -> str:
        """The bounded metrics label of a requested model name."""
        return requested if requested in self._routes else OTHER_MODEL

    def listing(self) -> list[tuple[str, str]]:
        """``(id, owned_by)`` of every model and alias, sorted; aliases are owned by chorus."""
        rows = []
        for name, route in self._routes.items():
            owner = "chorus" if route.model != name else route.targets[0].provider
            rows.append((name, owner))
        return sorted(rows)
