"""One trace from click to token: the spans every process exports, joined across every hop.

The stack runs with tracing on (every service exports to the devstack's OTLP receiver,
which decodes the protobuf the exporters send). A client that sends its own
``traceparent`` finds its operation as one trace: realtime's receive, the publish and
each replica's delivery, the job enqueued and run by the worker, the worker's call to the
gateway, the gateway's call to the provider with its first token, every delta published
and delivered — each span's parent in the process that caused it.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import httpx

from chorus_client import RoomClient
from chorus_devstack.stack import Stack
from chorus_e2e.accounts import PASSWORD, client_address, sign_up, unique_email
from chorus_e2e.chat import answered
from chorus_e2e.polling import eventually

Span = dict[str, Any]

REALTIME = "chorus-realtime"
WORKER = "chorus-worker"
GATEWAY = "chorus-llm-gateway"
API = "chorus-api"


def new_traceparent() -> tuple[str, str, str]:
    """A client's own span: ``(traceparent, trace id, span id)``, sampled."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def spans_of(ops: httpx.AsyncClient, stack: Stack, trace_id: str) -> list[Span]:
    """Every span of ``trace_id`` the receiver holds."""
    found = await ops.get(f"{stack.url('otlp-receiver')}/spans", params={"trace_id": trace_id})
    items: list[Span] = found.json()["items"]
    return items


def named(spans: list[Span], name: str, service: str) -> list[Span]:
    """The spans called ``name`` exported by ``service``."""
    return [s for s in spans if s["name"] == name and s["service"] == service]


def only(spans: list[Span], name: str, service: str) -> Span:
    """The one span called ``name`` from ``service``."""
    found = named(spans, name, service)
    assert len(found) == 1, f"{len(found)} spans {service}: {name}"
    return found[0]


def children(spans: list[Span], parent: Span) -> list[Span]:
    """The spans whose parent is ``parent``."""
    return [s for s in spans if s["parent_span_id"] == parent["span_id"]]


async def test_an_assistant_answer_is_one_trace_from_the_message_to_every_delivery(
    ingress: str, http: httpx.AsyncClient, ops: httpx.AsyncClient, stack: Stack
) -> None:
    room = f"traced-{os.urandom(4).hex()}"
    asker, watcher = await sign_up(http, "tracer"), await sign_up(http, "onlooker")
    traceparent, trace_id, client_span = new_traceparent()
    async with (
        RoomClient([ingress], room, asker.token) as mine,
        RoomClient([ingress], room, watcher.token) as theirs,
    ):
        await mine.wait_subscribed()
        await theirs.wait_subscribed()
        await mine.say("@assistant trace me", traceparent=traceparent)
        await mine.wait_for(lambda: bool(mine.messages()))
        [question] = [e for e in mine.events if e["type"] == "message"]
        for client in (mine, theirs):
            await client.wait_for(answered(client, question["id"]), timeout=30)
        deltas = len([e for e in mine.events if e["type"] == "ai.delta"])

    def complete(spans: list[Span]) -> bool:
        names = Counter((s["service"], s["name"]) for s in spans)
        expected = [
            (REALTIME, "receive message"),
            (REALTIME, "publish message"),
            (REALTIME, "deliver message"),
            (REALTIME, "enqueue answer_in_room"),
            (WORKER, "job answer_in_room"),
            (WORKER, "chat assistant"),
            (GATEWAY, "POST /v1/chat/completions"),
            (GATEWAY, "chat mock-gpt"),
            (GATEWAY, "enqueue record_llm_usage"),
            (WORKER, "job record_llm_usage"),
            (WORKER, "publish ai.done"),
            (REALTIME, "deliver ai.done"),
        ]
        return all(names[key] for key in expected) and (
            names[(REALTIME, "deliver ai.delta")] >= deltas
        )

    spans = await eventually(
        lambda: spans_of(ops, stack, trace_id), until=complete, what="the whole trace exported"
    )
    assert {s["trace_id"] for s in spans} == {trace_id}

    # realtime: the frame's traceparent is the parent of the receive; the message is
    # published (and delivered by the replicas of both sockets) and the job enqueued in it.
    receive = only(spans, "receive message", REALTIME)
    assert receive["parent_span_id"] == client_span
    assert receive["kind"] == "SERVER"
    assert receive["attributes"]["messaging.destination.name"] == f"room:{room}"
    publish = only(spans, "publish message", REALTIME)
    assert publish["parent_span_id"] == receive["span_id"]
    assert publish["attributes"]["messaging.message.id"] == question["id"]
    assert any(
        s["attributes"].get("db.system.name", s["attributes"].get("db.system")) == "redis"
        for s in children(spans, publish)
    ), "the publish script's Redis call is a child"
    delivered = named(spans, "deliver message", REALTIME)
    assert delivered
    assert all(s["parent_span_id"] == publish["span_id"] for s in delivered)
    enqueue = only(spans, "enqueue answer_in_room", REALTIME)
    assert enqueue["parent_span_id"] == receive["span_id"]
    assert enqueue["kind"] == "PRODUCER"

    # the worker runs the job in the enqueuer's trace and asks the gateway.
    job = only(spans, "job answer_in_room", WORKER)
    assert job["parent_span_id"] == enqueue["span_id"]
    assert job["kind"] == "CONSUMER"
    assert job["attributes"]["messaging.message.id"] == f"assistant:{room}:{question['id']}"
    ask = only(spans, "chat assistant", WORKER)
    assert ask["parent_span_id"] == job["span_id"]
    assert ask["kind"] == "CLIENT"
    assert ask["attributes"]["gen_ai.operation.name"] == "chat"
    assert ask["attributes"]["gen_ai.usage.output_tokens"] == 16
    assert ask["attributes"]["gen_ai.response.time_to_first_chunk"] > 0

    # the gateway serves it inside the worker's call and calls the provider.
    served = only(spans, "POST /v1/chat/completions", GATEWAY)
    assert served["parent_span_id"] == ask["span_id"]
    assert served["attributes"]["http.response.status_code"] == 200
    provider = only(spans, "chat mock-gpt", GATEWAY)
    assert provider["parent_span_id"] == served["span_id"]
    attributes = provider["attributes"]
    assert attributes["gen_ai.request.model"] == "mock-gpt"
    assert attributes["gen_ai.provider.name"] == "primary"
    assert attributes["chorus.gateway.requested_model"] == "assistant"
    assert attributes["gen_ai.usage.output_tokens"] == 16
    assert attributes["gen_ai.usage.input_tokens"] > 0
    [first_token] = [e for e in provider["events"] if e["name"] == "gen_ai.first_chunk"]
    assert provider["start_ns"] < first_token["time_ns"] < provider["end_ns"]
    # The provider got the request with the gateway span's context.
    records = await ops.get(f"{stack.url('mock-openai')}/_mock/requests", params={"limit": 50})
    sent = [r.get("traceparent") or "" for r in records.json()["data"]]
    assert f"00-{trace_id}-{provider['span_id']}-01" in sent
    # The usage of the call is recorded by a job in the same trace.
    usage = only(spans, "enqueue record_llm_usage", GATEWAY)
    assert usage["parent_span_id"] == served["span_id"]
    assert only(spans, "job record_llm_usage", WORKER)["parent_span_id"] == usage["span_id"]

    # every delta and the final message: published by the job, delivered by realtime.
    published = named(spans, "publish ai.delta", WORKER) + named(spans, "publish ai.done", WORKER)
    assert len(published) == deltas + 1
    assert all(s["parent_span_id"] == job["span_id"] for s in published)
    publish_ids = {s["span_id"] for s in published}
    deliveries = named(spans, "deliver ai.delta", REALTIME) + named(
        spans, "deliver ai.done", REALTIME
    )
    assert {s["parent_span_id"] for s in deliveries} == publish_ids
    assert all(s["kind"] == "CONSUMER" for s in deliveries)
    # In time order too: no delta is published before the provider's first token.
    assert min(s["start_ns"] for s in published) >= first_token["time_ns"]

    # Log lines written inside the trace carry it (the gateway's access log line).
    gateway_logs = "".join(stack.processes[n].tail(400) for n in stack.replicas("llm-gateway"))
    assert f"trace={trace_id}" in gateway_logs


async def test_an_api_request_continues_the_callers_trace_into_postgres_and_the_worker(
    http: httpx.AsyncClient, ops: httpx.AsyncClient, stack: Stack
) -> None:
    traceparent, trace_id, client_span = new_traceparent()
    response = await http.post(
        "/api/auth/register",
        json={"email": unique_email("traced"), "password": PASSWORD, "full_name": "Traced"},
        headers={"traceparent": traceparent, **client_address()},
    )
    assert response.status_code == 202, response.text

    def complete(spans: list[Span]) -> bool:
        names = {(s["service"], s["name"]) for s in spans}
        expected = {
            (API, "POST /api/auth/register"),
            (API, "enqueue send_welcome_email"),
            (WORKER, "job send_welcome_email"),
        }
        return expected <= names

    spans = await eventually(
        lambda: spans_of(ops, stack, trace_id), until=complete, what="the sign-up's trace"
    )
    served = only(spans, "POST /api/auth/register", API)
    assert served["parent_span_id"] == client_span
    assert served["kind"] == "SERVER"
    assert served["attributes"]["http.route"] == "/api/auth/register"
    assert served["attributes"]["http.response.status_code"] == 202
    assert served["attributes"]["chorus.request_id"] == response.headers["x-request-id"]
    # SQL statements (asyncpg, under the ORM) are children of the request.
    sql = [s for s in children(spans, served) if s["kind"] == "CLIENT" and s["service"] == API]
    assert any(
        s["attributes"].get("db.system.name", s["attributes"].get("db.system")) == "postgresql"
        for s in sql
    )
    enqueue = only(spans, "enqueue send_welcome_email", API)
    assert enqueue["parent_span_id"] == served["span_id"]
    job = only(spans, "job send_welcome_email", WORKER)
    assert job["parent_span_id"] == enqueue["span_id"]


async def test_latency_histograms_point_at_traces_through_exemplars(
    http: httpx.AsyncClient, ops: httpx.AsyncClient, stack: Stack
) -> None:
    traceparent, trace_id, _ = new_traceparent()
    response = await http.get("/api/users/999999999", headers={"traceparent": traceparent})
    assert response.status_code in {401, 404}

    async def exemplar_trace_ids() -> set[str]:
        found = await ops.get(
            f"{stack.url('prometheus')}/api/v1/query_exemplars",
            params={
                "query": 'chorus_http_request_duration_seconds_bucket{job="chorus-api"}',
                "start": "0",
                "end": "9999999999",
            },
        )
        ids = set()
        for series in found.json()["data"]:
            ids |= {e["labels"].get("trace_id") for e in series["exemplars"]}
        return ids

    await eventually(
        exemplar_trace_ids,
        until=lambda ids: trace_id in ids,
        timeout=30,
        what="the request's trace id as an exemplar in Prometheus",
    )
