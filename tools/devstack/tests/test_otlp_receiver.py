"""The OTLP receiver: what an OpenTelemetry exporter sends is what the receiver gives back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, StatusCode

from chorus_devstack.servers import RunningOtlpReceiver
from chorus_devstack.trace_view import render_list, render_tree


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOtlpReceiver]:
    server = RunningOtlpReceiver(tmp_path_factory.mktemp("otlp"))
    server.start()
    yield server
    server.stop()


def export_a_trace(endpoint: str) -> str:
    """A parent, a child with attributes, an event and a link, sent by the real exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": "exporter-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        linked = parent.get_span_context()
        with tracer.start_as_current_span(
            "child",
            kind=SpanKind.CLIENT,
            links=[Link(linked)],
            attributes={"s": "text", "i": 7, "f": 0.5, "b": True, "l": ["a", "b"]},
        ) as child:
            child.add_event("first token", {"at": 3})
            child.set_status(StatusCode.ERROR, "broken")
    provider.shutdown()
    return format(linked.trace_id, "032x")


def test_spans_sent_by_the_exporter_come_back_whole(receiver: RunningOtlpReceiver) -> None:
    trace_id = export_a_trace(f"{receiver.url}/v1/traces")
    spans = {s["name"]: s for s in receiver.spans(trace_id=trace_id)}
    assert set(spans) == {"parent", "child"}
    parent, child = spans["parent"], spans["child"]
    assert parent["parent_span_id"] is None
    assert child["parent_span_id"] == parent["span_id"]
    assert (parent["kind"], child["kind"]) == ("SERVER", "CLIENT")
    assert child["service"] == "exporter-test"
    assert child["attributes"] == {"s": "text", "i": 7, "f": 0.5, "b": True, "l": ["a", "b"]}
    assert [(e["name"], e["attributes"]) for e in child["events"]] == [("first token", {"at": 3})]
    assert child["links"] == [{"trace_id": trace_id, "span_id": parent["span_id"]}]
    assert child["status"] == {"code": "ERROR", "message": "broken"}
    assert parent["start_ns"] <= child["start_ns"] <= child["end_ns"] <= parent["end_ns"]
    # The JSON-lines copy holds them too.
    out = Path(receiver.process.spec.argv[-1])
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(s["name"] for s in kept if s["trace_id"] == trace_id) == ["child", "parent"]


def test_traces_are_listed_and_drawn(receiver: RunningOtlpReceiver) -> None:
    trace_id = export_a_trace(f"{receiver.url}/v1/traces")
    tree = render_tree(receiver.spans(trace_id=trace_id))
    parent_line, child_line = tree.splitlines()[1:]
    assert "exporter-test: parent (server)" in parent_line
    assert "  exporter-test: child (client)  ERROR" in child_line
    listed = render_list(httpx.get(f"{receiver.url}/traces").json()["items"])
    assert trace_id in listed
