"""Traces in a terminal: the receiver's traces listed, and one drawn as a tree of spans.

``python -m chorus_devstack traces`` (``make traces``) lists the newest traces the
devstack's OTLP receiver holds; ``--slowest`` the slowest; ``traces <trace id>`` draws
one: each span indented under its parent, with its service, duration, and what an
operator looks for first (status codes, the model and its time to first token, tokens,
the job and the channel).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["render_list", "render_tree"]

#: Attributes shown next to a span's name, when it has them.
_SHOWN = (
    "http.response.status_code",
    "gen_ai.request.model",
    "gen_ai.response.time_to_first_chunk",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "messaging.destination.name",
    "messaging.message.id",
    "chorus.realtime.subscribers",
    "db.system.name",
    "error.type",
)


def _details(span: dict[str, Any]) -> str:
    attributes = span["attributes"]
    shown = [f"{key.rsplit('.', 1)[-1]}={attributes[key]}" for key in _SHOWN if key in attributes]
    if span["status"]["code"] == "ERROR":
        shown.insert(0, "ERROR")
    return ("  " + " ".join(shown)) if shown else ""


def render_tree(spans: Iterable[dict[str, Any]]) -> str:
    """One trace's spans as an indented tree, children in start order; times from its start."""
    spans = sorted(spans, key=lambda s: s["start_ns"])
    if not spans:
        return "(no spans)"
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(span)
    origin = spans[0]["start_ns"]
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            offset = (span["start_ns"] - origin) / 1e6
            lines.append(
                f"{offset:9.1f} ms {span['duration_ms']:9.1f} ms  {'  ' * depth}"
                f"{span['service']}: {span['name']} ({span['kind'].lower()}){_details(span)}"
            )
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    return "\n".join(["    start   duration  span", *lines])


def render_list(traces: Iterable[dict[str, Any]]) -> str:
    """One line per trace: id, duration, spans, errors, root."""
    lines = [f"{'trace id':<32}  {'duration':>11}  spans  errors  root"]
    for trace in traces:
        lines.append(
            f"{trace['trace_id']:<32}  {trace['duration_ms']:>8.1f} ms  {trace['spans']:>5}  "
            f"{trace['errors']:>6}  {trace['root']}"
        )
    return "\n".join(lines)
