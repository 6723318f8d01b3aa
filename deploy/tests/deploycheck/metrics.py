"""Metric names: the ones alerts and dashboard panels use, and the ones services export."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "dashboard_exprs",
    "exported_names",
    "missing_metrics",
    "referenced_metrics",
    "rule_exprs",
]

#: Words of PromQL that are not metric names.
_PROMQL_WORDS = frozenset(
    [
        "sum",
        "rate",
        "irate",
        "increase",
        "max",
        "min",
        "avg",
        "count",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "histogram_quantile",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "abs",
        "clamp_min",
        "clamp_max",
        "delta",
        "deriv",
        "label_replace",
        "topk",
        "bottomk",
        "quantile",
        "stddev",
        "time",
        "vector",
        "scalar",
    ]
)
_NAME = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[|\)|\s|$)")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def rule_exprs(path: Path) -> list[str]:
    """Every expr of a Prometheus rules file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs(path: Path) -> list[str]:
    """Every target expr of a Grafana dashboard (rows' nested panels included)."""

    def panels(items: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(path.read_text())
    return [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]


def referenced_metrics(exprs: Iterable[str]) -> set[str]:
    """Metric names in PromQL expressions (label names/values and functions excluded)."""
    names: set[str] = set()
    for expr in exprs:
        bare = re.sub(r"\{[^}]*\}", "{}", expr)  # drop label matchers
        bare = re.sub(r"\[[^\]]*\]", "[]", bare)  # and range durations
        bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)  # and grouping labels
        bare = re.sub(r"\"[^\"]*\"", "", bare)
        for match in _NAME.finditer(bare):
            word = match.group(1)
            if word not in _PROMQL_WORDS and not re.fullmatch(r"[0-9.e]+", word):
                names.add(word)
    return names


def exported_names(exposition: str) -> set[str]:
    """Series names a /metrics page can produce: every declared family with its suffixes.

    A labelled metric with no observations yet has HELP/TYPE lines and no sample, so the
    TYPE lines (not the samples) say what a service exports.
    """
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names.update(name + suffix for suffix in _HISTOGRAM_SUFFIXES)
            if kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def missing_metrics(referenced: set[str], exported: set[str]) -> set[str]:
    """Referenced names no service exports (``up`` is Prometheus's own)."""
    return {name for name in referenced - exported if name != "up"}
