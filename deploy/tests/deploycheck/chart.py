"""Rendering the chart offline with Helm's own engine (helm-python-sdk, no helm binary)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

__all__ = [
    "CHART",
    "KUBE_VERSIONS",
    "REPO",
    "SCENARIOS",
    "Rendered",
    "lint",
    "load_scenario",
    "render",
]

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "helm" / "chorus"
#: The Kubernetes versions every scenario is validated against.
KUBE_VERSIONS = ("1.30", "1.34", "1.37")
SCENARIOS = tuple(
    sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
)
RELEASE = "chorus"
NAMESPACE = "chorus"


def load_scenario(name: str) -> dict[str, Any]:
    """The values of ``ci/<name>-values.yaml``."""
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text()) or {}


@dataclass
class Rendered:
    """A rendered release: the objects and the text of each template."""

    files: dict[str, str]
    objects: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, text in sorted(self.files.items()):
            if name.endswith("NOTES.txt"):
                continue
            self.objects += [doc for doc in yaml.safe_load_all(text) if doc]

    @property
    def notes(self) -> str:
        """The rendered NOTES.txt."""
        return next(text for name, text in self.files.items() if name.endswith("NOTES.txt"))

    @property
    def manifest(self) -> str:
        """Every object as one multi-document YAML stream (what `helm template` prints)."""
        return "".join(
            f"---\n# Source: {name}\n{text.strip()}\n"
            for name, text in sorted(self.files.items())
            if not name.endswith("NOTES.txt") and text.strip()
        )

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Objects of one kind."""
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """The object of ``kind`` named ``name`` (KeyError if absent)."""
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        msg = f"no {kind} {name}; have {[o['metadata']['name'] for o in self.of_kind(kind)]}"
        raise KeyError(msg)

    def kinds(self) -> set[str]:
        """The kinds present."""
        return {o["kind"] for o in self.objects}

    def pod_specs(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(object, pod spec) of every workload, test Pod and Job."""
        for obj in self.objects:
            if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
                yield obj, obj["spec"]["template"]["spec"]
            elif obj["kind"] == "Pod":
                yield obj, obj["spec"]


def render(
    values: Mapping[str, Any] | None = None,
    *,
    chart: Path = CHART,
    is_upgrade: bool = False,
) -> Rendered:
    """Render like `helm install` (or `helm upgrade`): schema-validated values, then templates.

    Raises ``helm_python.HelmError`` for values the schema rejects or a template ``fail``.
    """
    with helm.Chart.load(chart) as loaded:
        loaded.validate_schema(loaded.merge_values(dict(values or {})))
        files = loaded.render(
            values=dict(values or {}),
            name=RELEASE,
            namespace=NAMESPACE,
            revision=2 if is_upgrade else 1,
            is_install=not is_upgrade,
            is_upgrade=is_upgrade,
        )
    return Rendered(files)


def lint(values: Mapping[str, Any], *, kube_version: str, chart: Path = CHART) -> list[str]:
    """`helm lint --strict` findings of warning level and above, as text."""
    report = helm.lint(chart, dict(values), strict=True, kube_version=f"v{kube_version}.0")
    findings = [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2]
    return findings + [e for e in report["errors"] if e not in findings]
