"""Services: ClusterIPs, endpoints, and the proxies that carry connections to them.

Each Service of the release gets a ClusterIP (kept in its ``spec.clusterIP``, as the API
server fills it). Its endpoints are the ready, non-terminating pods its selector matches,
each at the ``targetPort`` — a number, or the port of that name in *that* pod's containers.
Every change of a pod's readiness re-syncs the proxies (``ServiceProxy``): a pod that stops
being ready stops receiving new connections at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from chorus_chartrun.kubelet import Pod
from chorus_chartrun.network import Network
from chorus_chartrun.objects import Store, matches
from chorus_chartrun.probes import named_port
from chorus_chartrun.proxy import ServiceProxy, Target
from chorus_chartrun.release import Obj

__all__ = ["Services"]


class Services:
    """The namespace's Services and their endpoints."""

    def __init__(self, store: Store, network: Network, pods: Callable[[], Iterable[Pod]]) -> None:
        self.store = store
        self.network = network
        self.pods = pods
        self.proxies: list[ServiceProxy] = []

    def service(self, namespace: str, name: str) -> Obj | None:
        """The Service named ``name``."""
        return self.store.find("Service", namespace, name)

    def ips(self, namespace: str) -> dict[str, str]:
        """Service name → ClusterIP."""
        return {
            s["metadata"]["name"]: s["spec"]["clusterIP"]
            for s in self.store.list("Service", namespace)
            if s["spec"].get("clusterIP")
        }

    async def create(self, service: Obj) -> None:
        """Allocate the Service's ClusterIP and open a proxy per port."""
        spec = service["spec"]
        if spec.get("type", "ClusterIP") != "ClusterIP" or spec.get("clusterIP") == "None":
            msg = f"Service {service['metadata']['name']}: only ClusterIP Services are supported"
            raise ValueError(msg)
        spec["clusterIP"] = await self.network.service_ip()
        self.store.apply(service)
        for port in spec.get("ports") or []:
            proxy = ServiceProxy(
                f"{service['metadata']['name']}:{port['port']}",
                spec["clusterIP"],
                int(port["port"]),
                functools.partial(self.endpoints, service, port),
            )
            self.proxies.append(proxy)

    def endpoints(self, service: Obj, port: Obj) -> list[Target]:
        """Ready pods behind ``service`` at ``port``'s target port."""
        selector = service["spec"].get("selector") or {}
        namespace = service["metadata"]["namespace"]
        found: list[Target] = []
        if not selector:
            return found
        target: int | str = port.get("targetPort") or port["port"]
        for pod in self.pods():
            if pod.namespace != namespace or not pod.ready or not matches(selector, pod.labels):
                continue
            for container in pod.spec["containers"]:
                try:
                    found.append((pod.ip, named_port(container, target)))
                    break
                except ValueError:
                    continue
        return found

    def endpoints_of(self, namespace: str, name: str, port: int | str) -> list[Target]:
        """Ready endpoints of Service ``name`` for its port ``port`` (number or name)."""
        service = self.service(namespace, name)
        if service is None:
            return []
        for declared in service["spec"].get("ports") or []:
            if port in (declared["port"], declared.get("name")):
                return self.endpoints(service, declared)
        return []

    async def sync(self) -> None:
        """Open or close every proxy as its endpoints come and go."""
        for proxy in self.proxies:
            await proxy.sync()

    async def close(self) -> None:
        """Close every proxy."""
        for proxy in self.proxies:
            await proxy.close()
