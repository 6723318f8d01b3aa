"""A container's environment, built as the kubelet builds it (``makeEnvironmentVariables``).

In order, later winning: the Service link variables (unless ``enableServiceLinks: false``),
each ``envFrom`` source (ConfigMap or Secret, with ``prefix``; keys that are not valid
variable names are skipped), then each ``env`` entry — a ``value`` with ``$(VAR)``
references expanded against what is defined so far, or a ``valueFrom``: ``fieldRef``,
``resourceFieldRef``, ``configMapKeyRef``, ``secretKeyRef``. A missing object or key fails
the container with the kubelet's own message (``CreateContainerConfigError``) unless the
reference is ``optional``. Nothing is added, renamed or rewritten.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chorus_chartrun.objects import NotFoundError, Store, config_data, secret_data
from chorus_chartrun.release import Obj

__all__ = ["ConfigError", "PodFacts", "container_env", "expand", "service_link_env"]

#: Environment variable names the kubelet accepts from envFrom (C identifiers and more).
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
_SUFFIXES: dict[str, int | Decimal] = {
    "": 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


class ConfigError(Exception):
    """The container cannot be configured (``CreateContainerConfigError``); the message says why."""


@dataclass(frozen=True)
class PodFacts:
    """What ``fieldRef`` can read about a pod."""

    name: str
    namespace: str
    uid: str
    node_name: str
    host_ip: str
    pod_ip: str
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` is a literal
    ``$``, and anything else (an undefined name, a lone ``$``) stays as written."""
    out: list[str] = []
    cursor, checkpoint = 0, 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            following = text[cursor + 1]
            advance = 1
            if following == "$":
                out.append("$")
            elif following == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                else:
                    name = text[cursor + 2 : close]
                    value = lookup(name)
                    out.append(value if value is not None else f"$({name})")
                    advance = close - cursor
            else:
                out.append("$" + following)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def service_link_env(services: list[Obj]) -> dict[str, str]:
    """The Docker-link style variables of every Service (``<NAME>_SERVICE_HOST``...)."""
    env: dict[str, str] = {}
    for service in services:
        ip = service["spec"].get("clusterIP")
        if not ip or ip == "None":
            continue
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        ports = service["spec"].get("ports") or []
        env[f"{prefix}_SERVICE_HOST"] = ip
        if ports:
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
            first = ports[0]
            env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port["port"]
                )
            base = f"{prefix}_PORT_{port['port']}_{protocol}"
            env[base] = f"{protocol.lower()}://{ip}:{port['port']}"
            env[f"{base}_PROTO"] = protocol.lower()
            env[f"{base}_PORT"] = str(port["port"])
            env[f"{base}_ADDR"] = ip
    return env


def _quantity(raw: Any) -> Decimal:
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(raw))
    if match is None or match.group(2) not in _SUFFIXES:
        msg = f"cannot parse quantity {raw!r}"
        raise ConfigError(msg)
    return Decimal(match.group(1)) * Decimal(_SUFFIXES[match.group(2)])


def _resource_field(container: Obj, ref: Mapping[str, Any]) -> str:
    kind, _, resource = ref["resource"].partition(".")
    resources = (container.get("resources") or {}).get(kind) or {}
    if resource not in ("cpu", "memory", "ephemeral-storage") or kind not in ("limits", "requests"):
        msg = f"unsupported resourceFieldRef {ref['resource']!r}"
        raise ConfigError(msg)
    if resource not in resources:
        msg = f"resourceFieldRef {ref['resource']}: the container sets no {kind} {resource}"
        raise ConfigError(msg)
    divisor = _quantity(ref.get("divisor", "1"))
    return str(math.ceil(_quantity(resources[resource]) / divisor))


def _field(pod: PodFacts, path: str) -> str:
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": pod.node_name,
        "spec.serviceAccountName": pod.service_account,
        "status.hostIP": pod.host_ip,
        "status.hostIPs": pod.host_ip,
        "status.podIP": pod.pod_ip,
        "status.podIPs": pod.pod_ip,
    }
    if path in simple:
        return simple[path]
    match = _LABEL_REF.match(path)
    if match:
        source = pod.labels if match.group(1) == "labels" else pod.annotations
        return source.get(match.group(2), "")
    msg = f"unsupported fieldRef fieldPath {path!r}"
    raise ConfigError(msg)


def _key_ref(store: Store, namespace: str, kind: str, ref: Mapping[str, Any]) -> str | None:
    """A ConfigMap or Secret key's value; None when missing and ``optional``."""
    optional = bool(ref.get("optional", False))
    try:
        obj = store.get(kind, namespace, ref["name"])
    except NotFoundError as exc:
        if optional:
            return None
        raise ConfigError(str(exc)) from None
    data = secret_data(obj) if kind == "Secret" else config_data(obj)
    if ref["key"] not in data:
        if optional:
            return None
        msg = f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}"
        raise ConfigError(msg)
    return data[ref["key"]].decode()


def container_env(
    container: Obj,
    *,
    pod: PodFacts,
    store: Store,
    service_links: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables the kubelet gives ``container`` (image defaults not included)."""
    env: dict[str, str] = dict(service_links or {})
    for source in container.get("envFrom") or []:
        env.update(_env_from(source, store, pod.namespace))
    for entry in container.get("env") or []:
        name = entry["name"]
        if "valueFrom" not in entry:
            env[name] = expand(str(entry.get("value", "")), env.get)
            continue
        value = _value_from(name, entry["valueFrom"], container, pod, store)
        if value is not None:
            env[name] = value
    return env


def _env_from(source: Mapping[str, Any], store: Store, namespace: str) -> dict[str, str]:
    """One ``envFrom`` entry: its object's valid keys, with the prefix."""
    prefix = source.get("prefix", "")
    found: dict[str, str] = {}
    for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
        ref = source.get(key)
        if ref is None:
            continue
        try:
            obj = store.get(kind, namespace, ref["name"])
        except NotFoundError as exc:
            if ref.get("optional"):
                continue
            raise ConfigError(str(exc)) from None
        data = secret_data(obj) if kind == "Secret" else config_data(obj)
        found.update(
            {prefix + n: v.decode() for n, v in data.items() if _ENV_NAME.match(prefix + n)}
        )
    return found


def _value_from(
    name: str, source: Mapping[str, Any], container: Obj, pod: PodFacts, store: Store
) -> str | None:
    """One ``valueFrom``; None when an optional reference is missing."""
    if "fieldRef" in source:
        return _field(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return _resource_field(container, source["resourceFieldRef"])
    if "configMapKeyRef" in source:
        return _key_ref(store, pod.namespace, "ConfigMap", source["configMapKeyRef"])
    if "secretKeyRef" in source:
        return _key_ref(store, pod.namespace, "Secret", source["secretKeyRef"])
    msg = f"env {name}: unsupported valueFrom {sorted(source)}"
    raise ConfigError(msg)
