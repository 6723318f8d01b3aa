"""Alert rules: promtool checks and unit tests, one rules file everywhere, a runbook section each."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from deploycheck.chart import CHART, REPO
from deploycheck.metrics import referenced_metrics, rule_exprs
from deploycheck.tools import promtool

PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "chorus.rules.yaml"
RUNBOOK = REPO / "docs" / "runbook.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
    )


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = _promtool("test", "rules", "chorus.rules.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text(RULES.read_text().replace("> 0.05", "> > 0.05", 1))
    result = subprocess.run(
        [str(promtool()), "check", "rules", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((PROMETHEUS / "chorus.rules.test.yaml").read_text())["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert alerts == tested


def test_chart_ships_the_same_rules_file() -> None:
    copy = CHART / "files" / "prometheus" / "chorus.rules.yaml"
    assert copy.read_text() == RULES.read_text(), (
        f"run: cp {RULES.relative_to(REPO)} {copy.relative_to(REPO)}"
    )


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors."""
    return {
        re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_every_alert_links_to_a_runbook_section() -> None:
    anchors = _anchors(RUNBOOK.read_text())
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            assert url.startswith("https://github.com/chorus/chorus/blob/main/docs/runbook.md#"), (
                url
            )
            assert url.split("#", 1)[1] in anchors, (
                f"{rule['alert']}: no section {url} in docs/runbook.md"
            )
            assert rule["labels"]["severity"] in ("warning", "critical")


def test_alerts_cover_the_contract_metrics() -> None:
    metrics = referenced_metrics(rule_exprs(RULES))
    for name in (
        "up",
        "chorus_http_requests_total",
        "chorus_http_request_duration_seconds_bucket",
        "chorus_realtime_slow_client_disconnects_total",
        "chorus_realtime_fanout_latency_seconds_bucket",
        "chorus_realtime_canary_lag_seconds",
        "chorus_gateway_upstream_errors_total",
        "chorus_gateway_ttft_seconds_bucket",
        "chorus_worker_jobs_failed_total",
        "chorus_worker_dead_letters_total",
        "chorus_worker_job_lag_seconds_bucket",
    ):
        assert name in metrics


def test_example_scrape_config(tmp_path: Path) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    relabels = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    assert relabels[("__meta_kubernetes_service_label_chorus_io_job",)]["target_label"] == "job"
    assert relabels[("__meta_kubernetes_service_label_chorus_io_metrics",)]["action"] == "keep"
    # Debian builds promtool without Kubernetes service discovery: check the rest of the file
    # with the discovery swapped for a static target.
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["chorus-api:8000"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "chorus.rules.yaml").write_text(RULES.read_text())
    result = subprocess.run(
        [str(promtool()), "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
