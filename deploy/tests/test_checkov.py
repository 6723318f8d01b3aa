"""checkov finds nothing on the rendered manifests and the Dockerfile; every skip says why."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from deploycheck.chart import REPO, SCENARIOS, Rendered
from deploycheck.tools import CHECKOV

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"


@pytest.fixture(scope="session")
def checkov(
    scenarios: dict[str, Rendered], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One checkov run over every scenario and the Dockerfile (it takes seconds to start)."""
    assert CHECKOV.exists(), "checkov is missing: run `make helm-check` (it creates .venv-deploy)"
    root = tmp_path_factory.mktemp("checkov")
    for name, rendered in scenarios.items():
        (root / "manifests" / name).mkdir(parents=True)
        (root / "manifests" / name / "manifest.yaml").write_text(rendered.manifest)
    (root / "dockerfiles").mkdir()
    (root / "dockerfiles" / "Dockerfile").write_text(DOCKERFILE.read_text())
    result = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(root),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    reports = json.loads(result.stdout)
    return {r["check_type"]: r for r in (reports if isinstance(reports, list) else [reports])}


def _failed(report: dict[str, Any], folder: str) -> list[str]:
    return [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"]["failed_checks"]
        if c["file_path"].startswith(f"/{folder}")
    ]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_failed_check_on_rendered_manifests(checkov: dict[str, Any], scenario: str) -> None:
    report = checkov["kubernetes"]
    assert _failed(report, f"manifests/{scenario}/") == []
    assert any(
        c["file_path"].startswith(f"/manifests/{scenario}/")
        for c in report["results"]["passed_checks"]
    )


def test_no_failed_check_on_the_dockerfile(checkov: dict[str, Any]) -> None:
    report = checkov["dockerfile"]
    assert _failed(report, "dockerfiles/") == []
    checked = {c["file_path"] for c in report["results"]["passed_checks"]}
    assert checked == {"/dockerfiles/Dockerfile"}


def test_every_skip_carries_a_reason(checkov: dict[str, Any]) -> None:
    skipped = [c for r in checkov.values() for c in r["results"].get("skipped_checks", [])]
    assert skipped
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason.split()) >= 5, (check["check_id"], check["resource"], reason)


def test_networkpolicy_skip_disappears_when_policies_exist(production: Rendered) -> None:
    annotations = production.get("Deployment", "chorus-api")["metadata"]["annotations"]
    assert not any("CKV2_K8S_6" in value for value in annotations.values())
