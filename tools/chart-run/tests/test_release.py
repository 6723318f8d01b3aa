"""Rendering like helm install: values merged as -f merges them, hooks told apart and ordered."""

from __future__ import annotations

from typing import Any

from chorus_chartrun.release import Release, merge_values, render
from chorus_devstack.routes import repo_root

CHART = repo_root() / "deploy" / "helm" / "chorus"


def test_values_merge_deeply_replace_lists_and_null_removes() -> None:
    base: dict[str, Any] = {"a": {"b": 1, "c": [1, 2]}, "d": 1, "gone": {"x": 1}}
    override: dict[str, Any] = {"a": {"c": [3]}, "e": 2, "gone": None}
    assert merge_values(base, override) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base["a"]["c"] == [1, 2]  # the inputs are not changed


def test_hooks_run_by_weight_then_kind_then_name() -> None:
    def hook(kind: str, name: str, weight: str) -> dict[str, object]:
        annotations = {"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-weight": weight}
        return {"kind": kind, "metadata": {"name": name, "annotations": annotations}}

    release = Release(
        "r",
        "ns",
        {},
        hooks=[
            hook("Job", "b", "5"),
            hook("Job", "a", "5"),
            hook("ConfigMap", "z", "5"),
            hook("Job", "first", "-1"),
        ],
    )
    assert [h["metadata"]["name"] for h in release.hooks_for("pre-install")] == [
        "first",
        "z",
        "a",
        "b",
    ]
    assert release.hooks_for("post-install") == []


def test_the_chart_renders_as_an_install() -> None:
    release = render(CHART, [{}])
    assert release.values["postgres"]["enabled"] is True
    assert [h["metadata"]["name"] for h in release.hooks_for("test")] == ["chorus-test-readiness"]
    # On install the migrations Job is an ordinary object (the README says why).
    assert [
        j["metadata"]["name"].startswith("chorus-migrate-") for j in release.of_kind("Job")
    ] == [True]
    kinds = [o["kind"] for o in release.objects]
    assert kinds.index("Secret") < kinds.index("Service") < kinds.index("Deployment")
    assert all(o["metadata"]["namespace"] == "chorus" for o in release.objects)
