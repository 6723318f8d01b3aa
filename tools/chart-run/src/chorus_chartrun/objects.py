"""The objects a cluster holds (what ``kubectl get`` would list), and label selectors.

The runner applies the release's objects (and what the site provides: an existing Secret,
a TLS certificate) to a :class:`Store`; the kubelet reads ConfigMaps and Secrets from it
when it builds a container, and controllers match pods to Services by their selectors.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

from chorus_chartrun.release import Obj

__all__ = ["NotFoundError", "Store", "config_data", "matches", "secret_data"]


class NotFoundError(LookupError):
    """An object a pod refers to does not exist (the message is the API server's)."""


class Store:
    """Objects by kind, namespace and name."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], Obj] = {}

    def apply(self, obj: Obj) -> None:
        """Create or replace ``obj``."""
        meta = obj["metadata"]
        self._objects[(obj["kind"], meta.get("namespace", ""), meta["name"])] = obj

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        """The object, or NotFoundError worded as the API server words it."""
        try:
            return self._objects[(kind, namespace, name)]
        except KeyError:
            msg = f'{kind.lower()} "{name}" not found'
            raise NotFoundError(msg) from None

    def find(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The object, or None."""
        return self._objects.get((kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> Iterator[Obj]:
        """Objects of ``kind`` (in ``namespace`` when given), in the order applied."""
        for (k, ns, _), obj in self._objects.items():
            if k == kind and (namespace is None or ns == namespace):
                yield obj


def secret_data(secret: Obj) -> dict[str, bytes]:
    """A Secret's keys and decoded values (``stringData`` merged over ``data``)."""
    data = {k: base64.b64decode(v or "") for k, v in (secret.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def config_data(config_map: Obj) -> dict[str, bytes]:
    """A ConfigMap's keys and values (``binaryData`` decoded)."""
    data = {k: str(v).encode() for k, v in (config_map.get("data") or {}).items()}
    data.update(
        {k: base64.b64decode(v or "") for k, v in (config_map.get("binaryData") or {}).items()}
    )
    return data


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy a label selector (``matchLabels``/``matchExpressions``, or
    a Service's plain map)."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(k) == v for k, v in selector.items())
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_holds(e, labels) for e in selector.get("matchExpressions") or [])


def _holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression["key"], expression["operator"]
    values = set(expression.get("values") or [])
    present = key in labels
    outcome = {
        "In": present and labels.get(key) in values,
        "NotIn": not (present and labels.get(key) in values),
        "Exists": present,
        "DoesNotExist": not present,
    }
    if operator not in outcome:
        msg = f"unknown selector operator {operator!r}"
        raise ValueError(msg)
    return outcome[operator]
