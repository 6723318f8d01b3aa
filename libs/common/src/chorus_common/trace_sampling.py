"""The sampler tracing uses: the standard ones by name, minus traces that are only noise.

``OTEL_TRACES_SAMPLER`` picks one of the specification's samplers (``parentbased_*``
follow the caller's decision, so one trace is sampled in every service or in none);
:class:`NoClientRoots` sits under it and drops a *client* span that has no parent — a
Redis command or SQL statement run outside any traced operation (the worker's queue
polling, readiness checks, presence refreshes), which would otherwise be a one-span trace
of its own many times a second. Imported only when tracing is on.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

__all__ = ["NoClientRoots", "build_sampler"]


class NoClientRoots(Sampler):
    """Drops client spans without a parent; asks ``root`` about every other span."""

    def __init__(self, root: Sampler) -> None:
        self._root = root

    def should_sample(  # noqa: PLR0917 - the signature of Sampler.should_sample
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """DROP a parentless client span; otherwise the wrapped sampler's answer."""
        if kind is SpanKind.CLIENT:
            parent = trace.get_current_span(parent_context).get_span_context()
            if not parent.is_valid:
                return SamplingResult(Decision.DROP)
        return self._root.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """What the sampler does, for the SDK's debug output."""
        return f"NoClientRoots{{{self._root.get_description()}}}"


def build_sampler(name: str, ratio: float | None) -> Sampler:
    """The sampler named ``name`` (``OTEL_TRACES_SAMPLER``) with ``ratio`` (``…_ARG``, 1.0)."""
    root: Sampler
    if name.endswith("always_on"):
        root = ALWAYS_ON
    elif name.endswith("always_off"):
        root = ALWAYS_OFF
    else:
        root = TraceIdRatioBased(1.0 if ratio is None else ratio)
    if name.startswith("parentbased_"):
        return ParentBased(root=NoClientRoots(root))
    return NoClientRoots(root)
