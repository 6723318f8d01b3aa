"""Probes and lifecycle handlers, run as the kubelet runs them.

``httpGet``: a GET from the node to the pod's address (or ``host``), with the probe's
headers and ``User-Agent: kube-probe``; a status from 200 to 399 succeeds. ``tcpSocket``:
the port accepts a connection. ``exec``: the command, run inside the container (its
namespaces, root, user and environment), exits 0. Each answers a :class:`Result` whose
message is worded as the kubelet words its events (``HTTP probe failed with statuscode:
404``). A probe's named port is the container's port of that name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from chorus_chartrun.release import Obj

__all__ = ["ProbeSpec", "Result", "named_port", "run_handler"]

#: Runs a command inside the container: (argv, timeout) → (exit status, output).
Exec = Callable[[list[str], float], Awaitable[tuple[int, str]]]

_KUBE_VERSION = "1.34"


@dataclass(frozen=True)
class Result:
    """One probe's outcome."""

    ok: bool
    message: str = ""


@dataclass(frozen=True)
class ProbeSpec:
    """A probe's handler and timing, with Kubernetes' defaults."""

    handler: Mapping[str, Any]
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: float | None = None

    @classmethod
    def parse(cls, probe: Mapping[str, Any]) -> ProbeSpec:
        """From a container's ``livenessProbe``/``readinessProbe``/``startupProbe``."""
        handlers = [k for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in probe]
        if len(handlers) != 1 or handlers[0] == "grpc":
            msg = f"probe handler {handlers or sorted(probe)} is not supported"
            raise ValueError(msg)
        grace = probe.get("terminationGracePeriodSeconds")
        return cls(
            handler={handlers[0]: probe[handlers[0]]},
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
            termination_grace=float(grace) if grace is not None else None,
        )


def named_port(container: Obj, port: int | str) -> int:
    """A port number, or the number of the container's port named ``port``."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    msg = f"port {port!r} is not a named port of container {container['name']}"
    raise ValueError(msg)


async def _http(handler: Mapping[str, Any], host: str, port: int, within: float) -> Result:
    scheme = str(handler.get("scheme", "HTTP")).lower()
    url = f"{scheme}://{host}:{port}{handler.get('path', '/')}"
    headers = {"User-Agent": f"kube-probe/{_KUBE_VERSION}", "Accept": "*/*"}
    headers.update({h["name"]: h["value"] for h in handler.get("httpHeaders") or []})
    try:
        # The kubelet does not verify a probe's certificate.
        options: dict[str, Any] = {"trust_env": False, "verify": False, "timeout": within}
        async with httpx.AsyncClient(**options) as client:
            response = await client.get(url, headers=headers)
    except httpx.TimeoutException:
        return Result(
            False,
            f'Get "{url}": context deadline exceeded (timed out after {within:g}s)',
        )
    except httpx.HTTPError as exc:
        return Result(False, f'Get "{url}": {type(exc).__name__}: {exc}')
    if 200 <= response.status_code < 400:
        return Result(True)
    body = " ".join(response.text[:300].split())
    return Result(
        False, f"HTTP probe failed with statuscode: {response.status_code} ({url}: {body})"
    )


async def _tcp(host: str, port: int, within: float) -> Result:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), within)
    except (OSError, TimeoutError) as exc:
        return Result(False, f"dial tcp {host}:{port}: {exc}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Result(True)


async def _network(
    kind: str, spec: Mapping[str, Any], container: Obj, pod_ip: str, within: float
) -> Result:
    """An ``httpGet`` or ``tcpSocket`` handler, to the pod (or ``host``) at the probe's port."""
    try:
        port = named_port(container, spec["port"])
    except ValueError as exc:
        return Result(False, str(exc))
    host = spec.get("host") or pod_ip
    if kind == "httpGet":
        return await _http(spec, host, port, within)
    return await _tcp(host, port, within)


async def _exec(command: list[str], execute: Exec, within: float) -> Result:
    status, output = await execute(command, within)
    if status == 0:
        return Result(True)
    detail = output.strip().splitlines()[-1:] or [""]
    return Result(False, f"command {command} exited with {status}: {detail[0]}")


async def run_handler(
    handler: Mapping[str, Any],
    *,
    container: Obj,
    pod_ip: str,
    within: float,
    execute: Exec,
) -> Result:
    """Run one probe (or lifecycle) handler: ``httpGet``, ``tcpSocket``, ``exec`` or ``sleep``."""
    for kind in ("httpGet", "tcpSocket"):
        if kind in handler:
            return await _network(kind, handler[kind], container, pod_ip, within)
    if "exec" in handler:
        command = [str(a) for a in handler["exec"].get("command") or []]
        return await _exec(command, execute, within)
    if "sleep" in handler:
        await asyncio.sleep(float(handler["sleep"]["seconds"]))
        return Result(True)
    return Result(False, f"handler {sorted(handler)} is not supported")
