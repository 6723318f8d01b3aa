"""A release: the chart rendered with Helm's own engine, as ``helm install`` renders it.

Values files are merged in order as ``helm install -f a.yaml -f b.yaml`` merges them (maps
deeply, everything else replaced, ``null`` deletes a default), then validated against the
chart's ``values.schema.json`` and rendered by helm-python-sdk (no cluster: ``lookup``
finds nothing, as on a first install). Hooks are told apart from release objects by their
``helm.sh/hook`` annotation and ordered as Helm runs them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

__all__ = [
    "Obj",
    "Release",
    "effective_values",
    "hook_events",
    "load_values_files",
    "merge_values",
    "render",
]

#: A Kubernetes object as the manifest has it.
Obj = dict[str, Any]

#: Helm's install order (pkg/release/util/kind_sorter.go), for applying and for logs.
INSTALL_ORDER = (
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
)


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base`` as Helm merges values files (``null`` removes a key)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _kind_rank(obj: Obj) -> int:
    kind = obj.get("kind", "")
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


@dataclass
class Release:
    """The rendered objects of one release, hooks apart."""

    name: str
    namespace: str
    values: dict[str, Any]
    objects: list[Obj] = field(default_factory=list)
    hooks: list[Obj] = field(default_factory=list)
    notes: str = ""

    def of_kind(self, kind: str) -> list[Obj]:
        """Release objects (not hooks) of one kind, in manifest order."""
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj | None:
        """The release object of ``kind`` named ``name``, if rendered."""
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)

    def hooks_for(self, event: str) -> list[Obj]:
        """Hooks of ``event`` (``pre-install``, ``test``...) in the order Helm runs them:
        by ``helm.sh/hook-weight``, then kind, then name."""
        chosen = [h for h in self.hooks if event in hook_events(h)]

        def weight(hook: Obj) -> tuple[int, int, str]:
            annotations = hook["metadata"].get("annotations", {})
            return (
                int(annotations.get("helm.sh/hook-weight", "0")),
                _kind_rank(hook),
                hook["metadata"]["name"],
            )

        return sorted(chosen, key=weight)


def hook_events(obj: Obj) -> list[str]:
    """The hook events an object is for (empty: an ordinary release object)."""
    raw = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")
    return [event.strip() for event in raw.split(",") if event.strip()]


def load_values_files(paths: Iterable[Path]) -> dict[str, Any]:
    """The values files merged in order (like repeated ``-f``)."""
    merged: dict[str, Any] = {}
    for path in paths:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            msg = f"{path}: values must be a YAML mapping"
            raise ValueError(msg)
        merged = merge_values(merged, loaded)
    return merged


def _merged(layers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for layer in layers:
        values = merge_values(values, layer)
    return values


def effective_values(chart: Path, layers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The chart's defaults with ``layers`` over them: the ``.Values`` templates would see."""
    with helm.Chart.load(chart) as loaded:
        return dict(loaded.merge_values(_merged(layers)))


def render(
    chart: Path,
    layers: Sequence[Mapping[str, Any]],
    *,
    name: str = "chorus",
    namespace: str = "chorus",
) -> Release:
    """Render ``chart`` for the values ``layers`` (later ones win) as a first install.

    Raises ``helm_python.HelmError`` when the schema refuses the values or a template fails.
    """
    values = _merged(layers)
    with helm.Chart.load(chart) as loaded:
        effective = loaded.merge_values(values)
        loaded.validate_schema(effective)
        files = loaded.render(
            values=values,
            name=name,
            namespace=namespace,
            revision=1,
            is_install=True,
            is_upgrade=False,
        )
    release = Release(name=name, namespace=namespace, values=effective)
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            release.notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            doc.setdefault("metadata", {}).setdefault("namespace", namespace)
            (release.hooks if hook_events(doc) else release.objects).append(doc)
    release.objects.sort(key=_kind_rank)
    return release
