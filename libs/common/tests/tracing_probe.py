"""A service process for the tracing tests: serves requests and reports what tracing did.

``python tracing_probe.py REDIS_URL`` builds a small service app with ``create_service_app``
(tracing set up from this process's ``OTEL_*`` environment, as in any service), sends it
requests over ASGI — one with a ``traceparent`` header, one that fails, a probe — and
prints a JSON report: whether the SDK was loaded, the threads running, what each request
answered, the envelope of an event and the job published inside a traced request (and
inside one whose trace is not sampled), the OpenMetrics exposition, and the log lines
written. Run in a process of its own because
tracing is set up once per process.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import threading
from typing import Any

import httpx
import orjson
from arq.connections import ArqRedis
from fastapi import APIRouter, FastAPI
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from redis.asyncio import Redis

from chorus_common.app import create_service_app
from chorus_common.events import EventBus
from chorus_common.job_tracing import enqueue_span
from chorus_common.logs import JsonFormatter
from chorus_common.queue import JOB_CODEC
from chorus_common.settings import ServiceSettings
from chorus_common.tracing import tracer

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#: A caller whose trace is not sampled.
UNSAMPLED = "00-1bf7651916cd43dd8448eb211c80319c-c7ad6b7169203331-00"


def build(redis_url: str) -> FastAPI:
    """The probe service: an item route, a failing route, and one that publishes and enqueues."""
    router = APIRouter()
    redis = Redis.from_url(redis_url)
    bus = EventBus(redis, history_size=10, history_ttl=60)
    arq = ArqRedis(redis.connection_pool, **JOB_CODEC)

    @router.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        logging.getLogger("probe").info("serving item %d", item_id)
        return {"id": item_id}

    @router.get("/boom")
    async def boom() -> None:
        msg = "kaboom"
        raise RuntimeError(msg)

    @router.post("/say")
    async def say() -> dict[str, Any]:
        published = await bus.publish("room:probe", "message", {"message": "hi"}, sender="1")
        job_id = f"probe:{os.getpid()}"
        with enqueue_span("probe_job", queue="arq:queue", job_id=job_id):
            await arq.enqueue_job("probe_job", 1, _job_id=job_id)
        job = await redis.get(f"arq:job:{job_id}")
        assert job is not None
        await redis.delete(f"arq:job:{job_id}")
        return {
            "envelope": orjson.loads(published.payload),
            "job": orjson.loads(job),
            # Whether redis-py's and asyncpg's instrumentations would make spans here.
            "instrumented": is_instrumentation_enabled(),
        }

    settings = ServiceSettings(env="dev", service_name="probe")
    return create_service_app(settings, title="probe", version="1.2.3", routers=[router])


async def main(redis_url: str) -> dict[str, Any]:
    """Serve the requests and report."""
    app = build(redis_url)
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("probe"))
    logging.getLogger().addHandler(handler)
    report: dict[str, Any] = {"tracing": tracer() is not None}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://probe") as client,
    ):
        traced = await client.get("/items/7", headers={"traceparent": TRACEPARENT})
        failed = await client.get("/boom")
        probe = await client.get("/readyz")
        said = await client.post("/say", headers={"traceparent": TRACEPARENT})
        unsampled = await client.post("/say", headers={"traceparent": UNSAMPLED})
        metrics = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
        report["threads"] = sorted(t.name for t in threading.enumerate())
        report["statuses"] = [traced.status_code, failed.status_code, probe.status_code]
        report["said"] = said.json()
        report["said_unsampled"] = unsampled.json()
        report["metrics_type"] = metrics.headers["content-type"]
        report["metrics"] = metrics.text
    report["sdk_loaded"] = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))
    report["logs"] = [json.loads(line) for line in lines.getvalue().splitlines()]
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
