"""Objects the tests build: Ingresses as the chart renders them."""

from __future__ import annotations

from typing import Any

__all__ = ["ingress"]


def ingress(
    name: str, host: str | None, paths: list[tuple[str, str, str]], **spec: Any
) -> dict[str, Any]:
    """An Ingress of class nginx: (path, pathType, Service) rules for ``host`` (None: any);
    ``annotations`` and other ``spec`` fields as keywords."""
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": kind,
                    "backend": {"service": {"name": service, "port": {"name": "http"}}},
                }
                for path, kind, service in paths
            ]
        }
    }
    if host:
        rule["host"] = host
    metadata = {"name": name, "namespace": "chorus", "annotations": spec.pop("annotations", {})}
    return {
        "kind": "Ingress",
        "metadata": metadata,
        "spec": {"ingressClassName": "nginx", "rules": [rule], **spec},
    }
