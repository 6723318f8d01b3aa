"""Tracing end to end in one service process: off without an endpoint, whole with one.

Each case runs ``tracing_probe.py`` in a process of its own (tracing is set up once per
process) against the real Redis of the test session and, with tracing on, a real OTLP
receiver (the devstack's, decoding the protobuf the exporter sends).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from chorus_devstack.servers import RunningOtlpReceiver, RunningRedis

PROBE = Path(__file__).with_name("tracing_probe.py")
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
UNSAMPLED_TRACE_ID = "1bf7651916cd43dd8448eb211c80319c"


def run_probe(redis: RunningRedis, **otel: str) -> dict[str, Any]:
    """The probe's report, run with only ``otel`` of the OTEL_* variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(otel)
    done = subprocess.run(
        [sys.executable, str(PROBE), redis.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def receiver(devstack_dir: Path) -> Any:
    server = RunningOtlpReceiver(devstack_dir / "otlp")
    server.start()
    yield server
    server.stop()


def test_without_an_endpoint_a_request_does_no_tracing_work(redis_server: RunningRedis) -> None:
    report = run_probe(redis_server)
    assert report["tracing"] is False
    # Nothing of the SDK is even imported, so no provider, processor or exporter exists.
    assert report["sdk_loaded"] == []
    assert not [t for t in report["threads"] if "Otel" in t or "Span" in t]
    assert report["statuses"] == [200, 500, 200]
    # The traceparent a client sent is not carried on: events and jobs are as they were.
    envelope = report["said"]["envelope"]
    assert "traceparent" not in envelope
    assert "tp" not in report["said"]["job"]
    assert "tp" not in report["said_unsampled"]["job"]
    assert not [line for line in report["logs"] if "trace_id" in line]
    assert "trace_id" not in report["metrics"]


def test_a_disabled_sdk_is_off_even_with_an_endpoint(
    redis_server: RunningRedis, receiver: RunningOtlpReceiver
) -> None:
    before = receiver.stats()["requests"]
    report = run_probe(
        redis_server, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_SDK_DISABLED="true"
    )
    assert report["tracing"] is False
    assert report["sdk_loaded"] == []
    assert receiver.stats()["requests"] == before


def test_with_an_endpoint_requests_events_jobs_logs_and_metrics_carry_the_trace(
    redis_server: RunningRedis, receiver: RunningOtlpReceiver
) -> None:
    receiver.clear()
    report = run_probe(
        redis_server, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_SERVICE_NAME="probe-svc"
    )
    assert report["tracing"] is True
    assert report["statuses"] == [200, 500, 200]
    spans = receiver.spans()  # the lifespan's end flushed them

    # The request continues the caller's trace, named by its route template.
    [item] = [s for s in spans if s["name"] == "GET /items/{item_id}"]
    assert item["trace_id"] == TRACE_ID
    assert item["parent_span_id"] == CALLER_SPAN
    assert item["kind"] == "SERVER"
    assert item["service"] == "probe-svc"
    assert item["attributes"]["http.route"] == "/items/{item_id}"
    assert item["attributes"]["http.response.status_code"] == 200
    # A crash is an error span with the exception; a probe is no span at all.
    [boom] = [s for s in spans if s["name"] == "GET /boom"]
    assert boom["status"]["code"] == "ERROR"
    assert boom["attributes"]["error.type"] == "RuntimeError"
    assert any(e["name"] == "exception" for e in boom["events"])
    assert not [s for s in spans if "/readyz" in s["name"]]

    # A publish inside the request is a producer span the envelope names as its parent.
    [said] = [s for s in spans if s["name"] == "POST /say"]
    [publish] = [s for s in spans if s["name"] == "publish message"]
    assert publish["parent_span_id"] == said["span_id"]
    assert publish["kind"] == "PRODUCER"
    envelope = report["said"]["envelope"]
    assert envelope["traceparent"] == f"00-{TRACE_ID}-{publish['span_id']}-01"
    assert list(envelope)[-1] == "traceparent"  # last: realtime finds it without parsing
    assert publish["attributes"]["messaging.message.id"] == envelope["id"]
    # So is an enqueue: the job carries the enqueue span for the worker.
    [enqueue] = [s for s in spans if s["name"] == "enqueue probe_job"]
    assert enqueue["parent_span_id"] == said["span_id"]
    assert report["said"]["job"]["tp"] == f"00-{TRACE_ID}-{enqueue['span_id']}-01"
    # The Redis commands are children (the maintained redis-py instrumentation).
    assert any(s["kind"] == "CLIENT" and s["parent_span_id"] == publish["span_id"] for s in spans)

    # A caller's unsampled trace costs no span here: the Redis instrumentation is told to
    # stay quiet, the event carries nothing, and the job carries the "not sampled" context
    # on, so the worker drops the trace too rather than sampling a fragment of it.
    assert report["said"]["instrumented"] is True
    unsampled = report["said_unsampled"]
    assert unsampled["instrumented"] is False
    assert "traceparent" not in unsampled["envelope"]
    assert re.fullmatch(f"00-{UNSAMPLED_TRACE_ID}-[0-9a-f]{{16}}-00", unsampled["job"]["tp"])
    assert not [s for s in spans if s["trace_id"] == UNSAMPLED_TRACE_ID]

    # Log lines written in the request carry its trace and span.
    [line] = [line for line in report["logs"] if line["msg"] == "serving item 7"]
    assert (line["trace_id"], line["span_id"]) == (TRACE_ID, item["span_id"])
    # The latency histogram carries the trace as an exemplar (OpenMetrics, when asked).
    assert report["metrics_type"].startswith("application/openmetrics-text")
    assert f'trace_id="{TRACE_ID}"' in report["metrics"]


def test_the_receiver_refuses_what_is_not_an_otlp_export(receiver: RunningOtlpReceiver) -> None:
    wrong_type = httpx.post(f"{receiver.url}/v1/traces", json={"resourceSpans": []})
    assert wrong_type.status_code == 415
    garbage = httpx.post(
        f"{receiver.url}/v1/traces",
        content=b"\xff\xff\xff",
        headers={"content-type": "application/x-protobuf"},
    )
    assert garbage.status_code == 400
