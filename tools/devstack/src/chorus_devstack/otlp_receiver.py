"""An OTLP/HTTP trace receiver that keeps what it receives: where the devstack's spans go.

``python -m chorus_devstack.otlp_receiver --port 4318 [--out spans.jsonl]``

- ``POST /v1/traces``: an OTLP ``ExportTraceServiceRequest`` in protobuf (gzip or not),
  exactly as OpenTelemetry exporters send it (``OTEL_EXPORTER_OTLP_ENDPOINT=http://…:4318``);
  decoded with ``opentelemetry-proto`` and answered with an ``ExportTraceServiceResponse``.
  Anything else is a 400/415 the exporter logs. Each span is kept in memory (the newest
  ``--keep``) and appended to ``--out`` as one JSON line.
- ``GET /spans?trace_id=…&name=…&service=…``: the spans kept, filtered, oldest first, as
  ``{"items": [span, ...]}`` — ``trace_id``, ``span_id``, ``parent_span_id``, ``name``,
  ``kind``, ``service``, ``start_ns``, ``end_ns``, ``duration_ms``, ``status``,
  ``attributes``, ``events``, ``links``.
- ``GET /traces?limit=…&slowest=true``: one line per trace (its root, duration, services,
  span count), newest or slowest first.
- ``DELETE /spans``: forget them. ``GET /healthz``. ``GET /stats``: requests and spans received.

A stand-in for an OpenTelemetry Collector in tests and ``make up TRACING=1``; it speaks
the same protocol on the same port, so a real collector (or Jaeger, Tempo…) can take its
place with nothing else changed.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import deque
from pathlib import Path
from typing import Any

import uvicorn
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["SpanStore", "build_app", "decode_request", "main"]

_PROTOBUF = "application/x-protobuf"
#: Largest export accepted (the SDK's batches are far smaller).
MAX_BODY = 16 * 1024 * 1024
_KINDS = {
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_PRODUCER: "PRODUCER",
    Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(pairs)
    return {pair.key: _value(pair.value) for pair in items}


def _span(span: Span, service: str, scope: str) -> dict[str, Any]:
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "name": span.name,
        "kind": _KINDS.get(span.kind, "UNSPECIFIED"),
        "service": service,
        "scope": scope,
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "duration_ms": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
        "status": {"code": _STATUS.get(span.status.code, "UNSET"), "message": span.status.message},
        "attributes": _attributes(span.attributes),
        "events": [
            {"name": e.name, "time_ns": e.time_unix_nano, "attributes": _attributes(e.attributes)}
            for e in span.events
        ],
        "links": [{"trace_id": k.trace_id.hex(), "span_id": k.span_id.hex()} for k in span.links],
    }


def decode_request(body: bytes) -> list[dict[str, Any]]:
    """The spans of an ``ExportTraceServiceRequest`` as dicts; DecodeError if it is not one."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", "unknown"))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            spans += [_span(span, service, scope) for span in scope_spans.spans]
    return spans


class SpanStore:
    """The newest ``keep`` spans, in arrival order, and a JSON-lines copy of all of them."""

    def __init__(self, keep: int, out: Path | None) -> None:
        self.spans: deque[dict[str, Any]] = deque(maxlen=keep)
        self.out = out
        self.requests = 0
        self.received = 0

    def add(self, spans: list[dict[str, Any]]) -> None:
        """Keep ``spans``."""
        self.requests += 1
        self.received += len(spans)
        self.spans.extend(spans)
        if self.out is not None and spans:
            with self.out.open("a") as file:
                file.writelines(json.dumps(span) + "\n" for span in spans)

    def find(
        self, *, trace_id: str | None, name: str | None, service: str | None
    ) -> list[dict[str, Any]]:
        """The spans matching every filter given."""
        return [
            span
            for span in self.spans
            if (trace_id is None or span["trace_id"] == trace_id)
            and (name is None or span["name"] == name)
            and (service is None or span["service"] == service)
        ]

    def traces(self, *, limit: int, slowest: bool) -> list[dict[str, Any]]:
        """One summary per trace: root span, services, span count, start and duration."""
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for span in self.spans:
            by_trace.setdefault(span["trace_id"], []).append(span)
        summaries = []
        for trace_id, spans in by_trace.items():
            ids = {s["span_id"] for s in spans}
            roots = [s for s in spans if s["parent_span_id"] not in ids]
            root = min(roots, key=lambda s: s["start_ns"])
            start = min(s["start_ns"] for s in spans)
            end = max(s["end_ns"] for s in spans)
            summaries.append(
                {
                    "trace_id": trace_id,
                    "root": f"{root['service']}: {root['name']}",
                    "start_ns": start,
                    "duration_ms": (end - start) / 1e6,
                    "spans": len(spans),
                    "services": sorted({s["service"] for s in spans}),
                    "errors": sum(s["status"]["code"] == "ERROR" for s in spans),
                }
            )
        key = "duration_ms" if slowest else "start_ns"
        summaries.sort(key=lambda t: t[key], reverse=True)
        return summaries[:limit]


def build_app(store: SpanStore) -> Starlette:
    """The receiver's HTTP app."""

    async def export(request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind != _PROTOBUF:
            return JSONResponse({"error": f"send {_PROTOBUF} (OTLP/HTTP)"}, status_code=415)
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "export too large"}, status_code=413)
        try:
            spans = decode_request(body)
        except DecodeError as exc:
            return JSONResponse({"error": f"not an ExportTraceServiceRequest: {exc}"}, 400)
        store.add(spans)
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=_PROTOBUF)

    async def spans(request: Request) -> JSONResponse:
        query = request.query_params
        found = store.find(
            trace_id=query.get("trace_id"), name=query.get("name"), service=query.get("service")
        )
        return JSONResponse({"items": found})

    async def traces(request: Request) -> JSONResponse:
        limit = int(request.query_params.get("limit", "20"))
        slowest = request.query_params.get("slowest", "false").lower() in {"1", "true", "yes"}
        return JSONResponse({"items": store.traces(limit=limit, slowest=slowest)})

    async def forget(_: Request) -> Response:
        store.spans.clear()
        return Response(status_code=204)

    async def stats(_: Request) -> JSONResponse:
        return JSONResponse({"requests": store.requests, "spans": store.received})

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/traces", export, methods=["POST"]),
            Route("/spans", spans, methods=["GET"]),
            Route("/spans", forget, methods=["DELETE"]),
            Route("/traces", traces, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m chorus_devstack.otlp_receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--out", type=Path, default=None, help="append spans here (JSON lines)")
    parser.add_argument("--keep", type=int, default=100_000, help="spans kept in memory")
    args = parser.parse_args()
    store = SpanStore(args.keep, args.out)
    uvicorn.run(build_app(store), host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
