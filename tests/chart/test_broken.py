"""A chart broken on purpose fails to install, and the report names each workload and why.

Three mistakes a template edit can make, in three workloads of one copy of the chart: the
worker reads a Secret key the Secret does not have, realtime's readiness probe asks for a
path the service does not serve, and the gateway's providers file is no longer mounted.
chart-run stops waiting as soon as none of them can recover and reports all three.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chorus_chartrun.runner import ChartRun, ChartRunError

from .conftest import CHART, SCENARIOS


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name}: the edit no longer applies"
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def broken_chart(runs_dir: Path) -> Path:
    """A copy of the chart with three mistakes."""
    copy = runs_dir / "broken-chart" / "chorus"
    shutil.copytree(CHART, copy)
    templates = copy / "templates"
    # 1. The worker reads its gateway key from a key the Secret does not have.
    _edit(
        templates / "_helpers.tpl",
        "{{- range $names }}\n- name: {{ . }}\n  valueFrom:\n    secretKeyRef:\n"
        "      name: {{ $secret }}\n      key: {{ . }}",
        "{{- range $names }}\n- name: {{ . }}\n  valueFrom:\n    secretKeyRef:\n"
        "      name: {{ $secret }}\n"
        '      key: {{ . | replace "LLM_GATEWAY_API_KEY" "LLM_GATEWAY_KEY" }}',
    )
    # 2. Realtime's readiness probe asks for a path realtime does not serve.
    _edit(
        templates / "deployments.yaml",
        "          readinessProbe:\n            httpGet:\n              path: /readyz",
        "          readinessProbe:\n            httpGet:\n"
        '              path: {{ if eq $key "realtime" }}/ready{{ else }}/readyz{{ end }}',
    )
    # 3. The gateway's providers volume is no longer mounted where LLM_PROVIDERS points.
    _edit(
        templates / "deployments.yaml",
        "            - name: llm-providers\n              mountPath: /etc/chorus/llm-providers\n"
        "              readOnly: true\n",
        "",
    )
    return copy


def test_each_broken_workload_is_named_with_its_cause(broken_chart: Path, runs_dir: Path) -> None:
    state = runs_dir / "broken"
    with pytest.raises(ChartRunError) as failure:
        ChartRun.launch(
            state, chart=broken_chart, values=[SCENARIOS["default"]], timeout=150
        ).wait()
    report = str(failure.value)
    sections = _by_workload(report)
    assert set(sections) == {
        "Deployment/chorus-worker",
        "Deployment/chorus-realtime",
        "Deployment/chorus-llm-gateway",
    }, report
    assert "timed out" not in report.splitlines()[0], report
    assert (
        "CreateContainerConfigError: couldn't find key LLM_GATEWAY_KEY "
        "in Secret chorus/chorus-secrets" in sections["Deployment/chorus-worker"]
    )
    assert (
        "Readiness probe failed: HTTP probe failed with statuscode: 404"
        in (sections["Deployment/chorus-realtime"])
    )
    gateway = sections["Deployment/chorus-llm-gateway"]
    assert "CrashLoopBackOff" in gateway
    assert "LLM_PROVIDERS names a file that cannot be read" in gateway
    assert "/etc/chorus/llm-providers/llm-providers.yaml" in gateway


def _by_workload(report: str) -> dict[str, str]:
    """The report's sections: ``Kind/name: …`` lines and the indented lines under them."""
    sections: dict[str, str] = {}
    current = ""
    for line in report.splitlines()[1:]:
        if not line.startswith(" ") and "/" in line.split(":", 1)[0]:
            current = line.split(":", 1)[0]
            sections[current] = line
        elif current:
            sections[current] += "\n" + line
    return sections
