"""What the rendered Ingress and HTTPRoute objects ask of the ingress: servers and locations.

**Ingress** (``networking.k8s.io/v1``, class ``nginx``), read as ingress-nginx reads it:
rules grouped by host (rules without a host serve every host), ``Prefix`` paths matching
whole path segments, ``Exact`` paths only themselves, TLS hosts served on 443 with the
Secret's certificate and redirected there from HTTP (308), and the ingress-nginx
annotations of each object applied to its own paths, over the controller's defaults. An
annotation of ``nginx.ingress.kubernetes.io/`` this controller does not implement is an
error, never silently ignored.

**HTTPRoute** (``gateway.networking.k8s.io/v1``), validated as a Gateway implementation
validates it before accepting it: every ``parentRef`` names a Gateway (and listener) that
exists, hostnames fit the listener, matches are paths (``PathPrefix``/``Exact``), every
backend is a Service of the namespace with that port, and ``timeouts`` are Gateway API
durations (``0s`` disables the timeout). A route that would not be accepted is an error
naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chorus_chartrun.release import Obj

__all__ = ["Backend", "Location", "RoutingError", "Server", "from_httproutes", "from_ingresses"]

_ANNOTATION = "nginx.ingress.kubernetes.io/"
_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
#: A timeout Gateway API disables with ``0s``: longer than any stream we carry.
_DISABLED = "86400s"


class RoutingError(ValueError):
    """An Ingress or HTTPRoute the ingress would not accept; the message names it and why."""


@dataclass(frozen=True)
class Backend:
    """A Service port behind a path."""

    service: str
    port: int | str


@dataclass(frozen=True)
class Location:
    """One path of a server and how it is proxied."""

    path: str
    exact: bool
    backend: Backend
    source: str
    read_timeout: str = "60s"
    send_timeout: str = "60s"
    connect_timeout: str = "5s"
    buffering: bool = False
    request_buffering: bool = True
    http_version: str = "1.1"
    body_size: str = "1m"


@dataclass
class Server:
    """A virtual host (``host`` None: every host) and its paths."""

    host: str | None
    tls_secret: str | None = None
    ssl_redirect: bool = True
    #: ingress-nginx adds Strict-Transport-Security on TLS hosts; Gateways do not.
    hsts: bool = True
    locations: list[Location] = field(default_factory=list)

    def add(self, location: Location) -> None:
        """Add a path; the same path twice is a conflict."""
        for known in self.locations:
            if (known.path, known.exact) == (location.path, location.exact):
                msg = (
                    f"{location.source}: path {location.path} of host {self.host or '*'} "
                    f"is already routed by {known.source}"
                )
                raise RoutingError(msg)
        self.locations.append(location)


def _seconds(raw: str, where: str) -> str:
    if not str(raw).isdigit():
        msg = f"{where}: expected a number of seconds, got {raw!r}"
        raise RoutingError(msg)
    return f"{raw}s"


def _switch(raw: str, where: str) -> bool:
    if raw not in ("on", "off"):
        msg = f"{where}: expected on or off, got {raw!r}"
        raise RoutingError(msg)
    return raw == "on"


def _annotated(
    location: Location, annotations: Mapping[str, str], source: str
) -> tuple[Location, bool]:
    """``location`` with the object's ingress-nginx annotations applied, and ssl-redirect."""
    changes: dict[str, Any] = {}
    redirect = True
    for key, value in annotations.items():
        if not key.startswith(_ANNOTATION):
            continue
        name = key.removeprefix(_ANNOTATION)
        where = f"{source}: annotation {key}"
        if name == "proxy-read-timeout":
            changes["read_timeout"] = _seconds(value, where)
        elif name == "proxy-send-timeout":
            changes["send_timeout"] = _seconds(value, where)
        elif name == "proxy-connect-timeout":
            changes["connect_timeout"] = _seconds(value, where)
        elif name == "proxy-buffering":
            changes["buffering"] = _switch(value, where)
        elif name == "proxy-request-buffering":
            changes["request_buffering"] = _switch(value, where)
        elif name == "proxy-http-version":
            if value not in ("1.0", "1.1"):
                msg = f"{where}: expected 1.0 or 1.1, got {value!r}"
                raise RoutingError(msg)
            changes["http_version"] = value
        elif name == "proxy-body-size":
            changes["body_size"] = value
        elif name == "ssl-redirect":
            redirect = value == "true"
        else:
            msg = (
                f"{where} is not implemented by chart-run's ingress-nginx (never silently ignored)"
            )
            raise RoutingError(msg)
    return replace(location, **changes), redirect


def from_ingresses(ingresses: Iterable[Obj], *, ingress_class: str = "nginx") -> list[Server]:
    """Servers for the Ingress objects of ``ingress_class`` (others are another controller's)."""
    servers: dict[str | None, Server] = {}
    for ingress in ingresses:
        spec = ingress["spec"]
        source = f"Ingress/{ingress['metadata']['name']}"
        if spec.get("ingressClassName", ingress_class) != ingress_class:
            continue
        if spec.get("defaultBackend"):
            msg = f"{source}: defaultBackend is not supported"
            raise RoutingError(msg)
        annotations = ingress["metadata"].get("annotations") or {}
        namespace = ingress["metadata"]["namespace"]
        tls_hosts = {
            h: f"{namespace}/{t['secretName']}"
            for t in spec.get("tls") or []
            for h in t.get("hosts") or []
        }
        for rule in spec.get("rules") or []:
            host = rule.get("host")
            server = servers.setdefault(host, Server(host))
            if host in tls_hosts:
                server.tls_secret = tls_hosts[host]
            for path in (rule.get("http") or {}).get("paths") or []:
                kind = path.get("pathType")
                if kind not in ("Prefix", "Exact"):
                    msg = f"{source}: pathType {kind!r} of {path.get('path')} is not supported"
                    raise RoutingError(msg)
                service = path["backend"].get("service")
                if not service:
                    msg = f"{source}: path {path['path']} has no Service backend"
                    raise RoutingError(msg)
                port = service["port"].get("number", service["port"].get("name"))
                location = Location(
                    path["path"], kind == "Exact", Backend(service["name"], port), source
                )
                location, redirect = _annotated(location, annotations, source)
                server.ssl_redirect = server.ssl_redirect and redirect
                server.add(location)
    return list(servers.values())


def _duration(raw: str, where: str) -> str:
    if not _DURATION.match(raw):
        msg = f"{where}: {raw!r} is not a Gateway API duration"
        raise RoutingError(msg)
    seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"([0-9]+)(h|ms|m|s)", raw))
    return _DISABLED if seconds == 0 else f"{max(int(seconds), 1)}s"


def _listeners(route: Obj, gateways: Iterable[Obj]) -> list[tuple[str, Obj]]:
    """The (Gateway namespace, listener) pairs the route's parentRefs attach it to."""
    source = f"HTTPRoute/{route['metadata']['name']}"
    namespace = route["metadata"]["namespace"]
    known = {(g["metadata"]["namespace"], g["metadata"]["name"]): g for g in gateways}
    chosen: list[tuple[str, Obj]] = []
    for ref in route["spec"].get("parentRefs") or []:
        if ref.get("kind", "Gateway") != "Gateway":
            msg = f"{source}: parentRef kind {ref['kind']} is not supported"
            raise RoutingError(msg)
        key = (ref.get("namespace", namespace), ref["name"])
        if key not in known:
            msg = f"{source}: parentRef {key[0]}/{key[1]}: no such Gateway (NoMatchingParent)"
            raise RoutingError(msg)
        listeners = known[key]["spec"]["listeners"]
        if ref.get("sectionName"):
            listeners = [item for item in listeners if item["name"] == ref["sectionName"]]
            if not listeners:
                msg = (
                    f"{source}: Gateway {key[0]}/{key[1]} has no listener "
                    f"{ref['sectionName']!r} (NoMatchingParent)"
                )
                raise RoutingError(msg)
        if ref.get("port") is not None:
            listeners = [item for item in listeners if item["port"] == ref["port"]]
        chosen += [(key[0], item) for item in listeners]
    if not chosen:
        msg = f"{source}: no parentRefs"
        raise RoutingError(msg)
    return chosen


def _hostnames(route: Obj, listener: Obj, source: str) -> list[str | None]:
    wanted: list[str] = list(route["spec"].get("hostnames") or [])
    allowed = listener.get("hostname")
    if allowed is None:
        return list(wanted) or [None]
    fits = [
        h for h in wanted if h == allowed or (allowed.startswith("*.") and h.endswith(allowed[1:]))
    ]
    if wanted and not fits:
        msg = (
            f"{source}: hostnames {wanted} do not match listener {listener['name']} "
            f"({allowed}) (NoMatchingListenerHostname)"
        )
        raise RoutingError(msg)
    return list(fits) or [allowed]


def from_httproutes(
    routes: Iterable[Obj], gateways: Iterable[Obj], services: Mapping[str, Obj]
) -> list[Server]:
    """Servers for HTTPRoutes attached to ``gateways``; ``services`` by name in the namespace."""
    servers: dict[str | None, Server] = {}
    gateway_list = list(gateways)
    for route in routes:
        source = f"HTTPRoute/{route['metadata']['name']}"
        for gateway_namespace, listener in _listeners(route, gateway_list):
            tls = None
            if listener.get("protocol") == "HTTPS":
                refs = (listener.get("tls") or {}).get("certificateRefs") or []
                tls = f"{gateway_namespace}/{refs[0]['name']}" if refs else None
            for host in _hostnames(route, listener, source):
                server = servers.setdefault(
                    host, Server(host, tls_secret=tls, ssl_redirect=False, hsts=False)
                )
                for index, rule in enumerate(route["spec"].get("rules") or []):
                    for location in _rule_locations(rule, f"{source} rules[{index}]", services):
                        server.add(location)
    return list(servers.values())


def _rule_locations(rule: Obj, where: str, services: Mapping[str, Obj]) -> list[Location]:
    backends = rule.get("backendRefs") or []
    if len(backends) != 1:
        msg = f"{where}: exactly one backendRef is supported, got {len(backends)}"
        raise RoutingError(msg)
    backend = backends[0]
    if backend.get("kind", "Service") != "Service" or backend.get("group", "") != "":
        msg = f"{where}: backendRef {backend} is not a Service (InvalidKind)"
        raise RoutingError(msg)
    service = services.get(backend["name"])
    if service is None:
        msg = f"{where}: backendRef Service {backend['name']} does not exist (BackendNotFound)"
        raise RoutingError(msg)
    if "port" not in backend or backend["port"] not in [
        p["port"] for p in service["spec"].get("ports") or []
    ]:
        msg = (
            f"{where}: backendRef {backend['name']} port {backend.get('port')} is not a port of it"
        )
        raise RoutingError(msg)
    timeouts = rule.get("timeouts") or {}
    unknown = set(timeouts) - {"request", "backendRequest"}
    if unknown:
        msg = f"{where}: unknown timeouts {sorted(unknown)}"
        raise RoutingError(msg)
    read = _duration(
        timeouts.get("request") or timeouts.get("backendRequest") or "60s", f"{where} timeouts"
    )
    for key in ("filters", "sessionPersistence"):
        if rule.get(key):
            msg = f"{where}: {key} is not supported"
            raise RoutingError(msg)
    locations = []
    for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
        if set(match) - {"path"}:
            msg = f"{where}: only path matches are supported, got {sorted(match)}"
            raise RoutingError(msg)
        path = match.get("path") or {"type": "PathPrefix", "value": "/"}
        kind, value = path.get("type", "PathPrefix"), path.get("value", "/")
        if kind not in ("PathPrefix", "Exact") or not value.startswith("/"):
            msg = f"{where}: path match {path} is not supported (PathPrefix or Exact, from /)"
            raise RoutingError(msg)
        locations.append(
            Location(
                value,
                kind == "Exact",
                Backend(backend["name"], backend["port"]),
                where,
                read_timeout=read,
                send_timeout=read,
                request_buffering=False,
            )
        )
    return locations
