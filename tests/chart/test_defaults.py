"""``helm install`` with nothing but the chart's defaults: every workload gets ready.

No values at all — no LLM provider (``secrets.llmProviders: []``), no SMTP relay — as a new
user's first install: the gateway starts serving no model, and ``helm test`` passes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from chorus_chartrun.runner import ChartRun
from chorus_e2e.accounts import sign_up
from chorus_e2e.endpoint import Endpoint


async def test_the_chart_defaults_alone_install_and_pass_helm_test(runs_dir: Path) -> None:
    state = runs_dir / "defaults"
    run = await asyncio.to_thread(ChartRun.launch(state, extra=["--no-site-values"]).wait)
    try:
        status = run.status()
        assert all(w["ready"] for w in status["workloads"]), status["workloads"]
        assert run.info["tests"] == [{"pod": "chorus-test-readiness", "phase": "Succeeded"}]
        async with Endpoint(run.urls["ingress_http"]).client(timeout=15) as http:
            user = await sign_up(http, "first")
            models = await http.get("/v1/models", headers=user.auth)
            completion = await http.post(
                "/v1/chat/completions",
                headers=user.auth,
                json={"model": "assistant", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert (models.status_code, models.json()["data"]) == (200, [])
        assert completion.status_code == 404
        assert completion.json()["error"]["code"] == "model_not_found"
    finally:
        assert run.stop() == 0
