"""Liveness, readiness and metrics endpoints, and the registry of readiness checks.

``/healthz`` answers while the process serves (never touches a dependency: a Redis outage
must not make Kubernetes restart every pod). ``/readyz`` runs every registered check
concurrently, each with a timeout, and answers 503 naming the failing checks — or naming
``draining`` once shutdown has begun. ``/metrics`` is the Prometheus text exposition, or
OpenMetrics when the scraper asks for it (``Accept: application/openmetrics-text``, as
Prometheus does) — the format that carries histograms' exemplars (trace ids).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from chorus_common.lifecycle import Lifecycle

__all__ = ["Check", "CheckResult", "Health", "health_router"]

#: A readiness check: returns when the dependency answers, raises when it does not.
Check = Callable[[], Awaitable[object]]

READY = Gauge(
    "chorus_ready",
    "1 when the last /readyz found every dependency answering, else 0.",
)
CHECK_UP = Gauge(
    "chorus_dependency_up",
    "1 when the named readiness check passed on its last run, else 0.",
    ["check"],
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one readiness check."""

    name: str
    ok: bool
    detail: str
    seconds: float


class Health:
    """Named readiness checks run with a per-check timeout."""

    def __init__(self, lifecycle: Lifecycle, *, timeout: float) -> None:
        self.lifecycle = lifecycle
        self.timeout = timeout
        self._checks: dict[str, Check] = {}

    def add_check(self, name: str, check: Check) -> None:
        """Register ``check`` under ``name`` (e.g. ``redis``, ``postgres``)."""
        self._checks[name] = check

    async def _run_one(self, name: str, check: Check) -> CheckResult:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(check(), timeout=self.timeout)
        except TimeoutError:
            result = CheckResult(name, False, f"timed out after {self.timeout}s", 0.0)
        except Exception as exc:
            result = CheckResult(name, False, f"{type(exc).__name__}: {exc}"[:300], 0.0)
        else:
            result = CheckResult(name, True, "ok", 0.0)
        elapsed = time.perf_counter() - start
        CHECK_UP.labels(name).set(1 if result.ok else 0)
        return CheckResult(result.name, result.ok, result.detail, round(elapsed, 4))

    async def run(self) -> list[CheckResult]:
        """Run all checks concurrently; the draining state counts as a failed check."""
        results = list(
            await asyncio.gather(*(self._run_one(n, c) for n, c in self._checks.items()))
        )
        if self.lifecycle.draining:
            results.append(CheckResult("draining", False, "shutting down", 0.0))
        READY.set(1 if all(r.ok for r in results) else 0)
        return results


def health_router() -> APIRouter:
    """The ``/healthz``, ``/readyz`` and ``/metrics`` routes (hidden from OpenAPI)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        health: Health = request.app.state.health
        results = await health.run()
        checks = {r.name: {"ok": r.ok, "detail": r.detail, "seconds": r.seconds} for r in results}
        failing = [r for r in results if not r.ok]
        if not failing:
            return JSONResponse({"status": "ready", "checks": checks})
        message = "; ".join(f"{r.name}: {r.detail}" for r in failing)
        return JSONResponse(
            {
                "status": "unavailable",
                "checks": checks,
                "error": {"code": "not_ready", "message": message},
            },
            status_code=503,
        )

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        if "application/openmetrics-text" in request.headers.get("accept", ""):
            return Response(
                openmetrics.generate_latest(REGISTRY),  # type: ignore[no-untyped-call]
                media_type=openmetrics.CONTENT_TYPE_LATEST,
            )
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router
