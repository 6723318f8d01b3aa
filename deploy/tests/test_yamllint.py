"""yamllint (the committed .yamllint) on values, scenarios, rules, compose and rendered output."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploycheck.chart import CHART, REPO, SCENARIOS, Rendered
from yamllint import linter
from yamllint.config import YamlLintConfig

CONFIG = YamlLintConfig(file=str(REPO / ".yamllint"))
#: Rendered ConfigMaps carry data (the dashboard JSON, the rules' PromQL): long lines there are content.
RENDERED = YamlLintConfig(file=str(REPO / ".yamllint"))
RENDERED.rules["line-length"] = False
# Helm's toYaml writes sequences unindented under their key, the templates indent theirs.
RENDERED.rules["indentation"] = {**RENDERED.rules["indentation"], "indent-sequences": "whatever"}
SOURCES = [
    CHART / "values.yaml",
    CHART / "Chart.yaml",
    *sorted((CHART / "ci").glob("*.yaml")),
    *sorted((REPO / "deploy" / "prometheus").glob("*.yaml")),
    *sorted((REPO / "deploy" / "prometheus").glob("*.yml")),
    REPO / "compose.yaml",
    CHART / "files" / "routes.yaml",
]


def _problems(text: str, config: YamlLintConfig) -> list[str]:
    return [f"{p.line}:{p.column} {p.message} ({p.rule})" for p in linter.run(text, config)]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(Path(p).relative_to(REPO)))
def test_source_yaml_is_clean(path: Path) -> None:
    assert _problems(path.read_text(), CONFIG) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_output_is_clean(scenarios: dict[str, Rendered], scenario: str) -> None:
    assert _problems(scenarios[scenario].manifest, RENDERED) == []


def test_yamllint_sees_a_problem() -> None:
    assert _problems("a: 1\na: 2\n", CONFIG) != []
