"""The route table shared with the Helm chart (``deploy/helm/chorus/files/routes.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

__all__ = ["ROUTES_FILE", "Route", "load_routes", "repo_root"]

ROUTES_FILE = Path("deploy/helm/chorus/files/routes.yaml")
Kind = Literal["http", "websocket", "stream"]


@dataclass(frozen=True, slots=True)
class Route:
    """Public path prefix → service (``exact``: the path itself only, not a prefix)."""

    prefix: str
    service: str
    kind: Kind
    exact: bool = False


def repo_root(start: Path | None = None) -> Path:
    """The checkout this devstack runs from (the directory holding the route table)."""
    candidates = [start or Path.cwd(), Path(__file__).resolve()]
    for origin in candidates:
        for directory in (origin, *origin.parents):
            if (directory / ROUTES_FILE).is_file():
                return directory
    msg = f"cannot find {ROUTES_FILE} above {candidates[0]}: run from the Chorus checkout"
    raise FileNotFoundError(msg)


def load_routes(path: Path | None = None) -> list[Route]:
    """The routes, longest prefix first (the order a matcher must try them in)."""
    raw = yaml.safe_load((path or repo_root() / ROUTES_FILE).read_text())
    routes = [
        Route(r["prefix"], r["service"], r["kind"], bool(r.get("exact", False)))
        for r in raw["routes"]
    ]
    for route in routes:
        if route.kind not in ("http", "websocket", "stream") or not route.prefix.startswith("/"):
            msg = f"bad route {route}"
            raise ValueError(msg)
    return sorted(routes, key=lambda r: len(r.prefix), reverse=True)
