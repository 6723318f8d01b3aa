"""Prometheus, configured by the devstack, scrapes real targets and loads rules."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess
from chorus_devstack.prometheus import (
    prometheus_spec,
    render_prometheus_config,
)
from chorus_devstack.servers import RunningMockOpenAI

RULES = """
groups:
  - name: probe
    rules:
      - alert: ProbeDown
        expr: up{job="probe"} == 0
        for: 1m
"""


def test_scrapes_targets_and_loads_rules(tmp_path: Path, mock_openai: RunningMockOpenAI) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    port = free_port()
    # The mock serves no /metrics; a target that answers 404 is "down", which is what we
    # check: Prometheus really scraped it and evaluated the rule against the result.
    config = render_prometheus_config(
        targets={"probe": [mock_openai.url.removeprefix("http://")]}, rule_files=[rules]
    )
    process = ManagedProcess(prometheus_spec(tmp_path, config, port=port), tmp_path)
    process.start()
    try:
        process.wait_ready(timeout=30)
        api = f"http://127.0.0.1:{port}/api/v1"
        with httpx.Client(trust_env=False) as client:
            loaded = client.get(f"{api}/rules").json()["data"]["groups"]
            assert [r["name"] for g in loaded for r in g["rules"]] == ["ProbeDown"]
            deadline = time.monotonic() + 20
            while True:
                result = client.get(f"{api}/query", params={"query": 'up{job="probe"}'}).json()
                if result["data"]["result"]:
                    break
                assert time.monotonic() < deadline, "no scrape happened"
                time.sleep(0.2)
            assert result["data"]["result"][0]["value"][1] == "0"
    finally:
        process.stop()
