"""The cluster network, in network namespaces of its own: one address per pod, names in hosts.

The runner moves itself into a new network namespace — the *node* — before it starts
anything, so the machine's own interfaces are never touched and everything disappears with
it. In the node: a bridge ``cbr0`` (10.244.0.1/16, the pod network's gateway), the Service
ClusterIPs (10.96.0.0/16) and the addresses of the world outside the cluster (192.0.2.0/24,
TEST-NET-1), both on ``lo``. Each pod gets a sandbox — a process in new network, UTS and IPC
namespaces, as Kubernetes' pause container — joined to the bridge by a veth pair, with its
own address and a default route through the node. Containers join their pod's sandbox, so
every one of them can listen on ``0.0.0.0:8000`` as the chart says.

Names resolve as cluster DNS would resolve them, through the pod's ``/etc/hosts`` (written
by the kubelet, bound in the container's mount namespace): every Service as ``<name>``,
``<name>.<ns>``, ``<name>.<ns>.svc`` and ``<name>.<ns>.svc.cluster.local``, and the names the
world outside the cluster answers to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from chorus_chartrun.linux import CLONE_NEWNET, unshare

__all__ = [
    "CLUSTER_DOMAIN",
    "GATEWAY",
    "Network",
    "NetworkError",
    "hosts_file",
    "resolv_conf",
]

POD_CIDR = ipaddress.IPv4Network("10.244.0.0/16")
GATEWAY = "10.244.0.1"
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/16")
OUTSIDE_CIDR = ipaddress.IPv4Network("192.0.2.0/24")
CLUSTER_DOMAIN = "cluster.local"
BRIDGE = "cbr0"


class NetworkError(RuntimeError):
    """The network could not be set up (the message holds ``ip``'s complaint)."""


async def _ip(*commands: str, netns_pid: int | None = None) -> None:
    """Run ``ip -batch`` commands in the node (or in ``netns_pid``'s network namespace)."""
    argv = ["ip", "-batch", "-"]
    if netns_pid is not None:
        argv = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", *argv]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate("\n".join(commands).encode() + b"\n")
    if process.returncode != 0:
        msg = f"ip {'; '.join(commands)}: {output.decode(errors='replace').strip()}"
        raise NetworkError(msg)


def _namespace_inode(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


@dataclass(frozen=True)
class Attachment:
    """A pod sandbox's place on the network."""

    ip: str
    veth: str


class Network:
    """Addresses and links of the node; one instance per runner process."""

    def __init__(self) -> None:
        self._pod_ips: Iterator[ipaddress.IPv4Address] = (
            ip for ip in POD_CIDR.hosts() if str(ip) != GATEWAY
        )
        self._service_ips: Iterator[ipaddress.IPv4Address] = iter(list(SERVICE_CIDR.hosts())[9:])
        self._outside_ips: Iterator[ipaddress.IPv4Address] = iter(list(OUTSIDE_CIDR.hosts())[9:])
        self._veths = 0

    @staticmethod
    def enter_node() -> None:
        """Move the calling process (still single-threaded) into a new network namespace."""
        unshare(CLONE_NEWNET)

    async def set_up_node(self) -> None:
        """Loopback, and the bridge the pods attach to."""
        await _ip(
            "link set lo up",
            f"link add {BRIDGE} type bridge",
            f"addr add {GATEWAY}/{POD_CIDR.prefixlen} dev {BRIDGE}",
            f"link set {BRIDGE} up",
        )

    async def _local_address(self, pool: Iterator[ipaddress.IPv4Address]) -> str:
        address = str(next(pool))
        await _ip(f"addr add {address}/32 dev lo")
        return address

    async def service_ip(self) -> str:
        """A new ClusterIP, reachable from every pod through the node."""
        return await self._local_address(self._service_ips)

    async def outside_ip(self) -> str:
        """A new address of the world outside the cluster (servers the site runs)."""
        return await self._local_address(self._outside_ips)

    async def attach(self, sandbox_pid: int) -> Attachment:
        """Give the sandbox ``sandbox_pid`` an address on the pod network."""
        node = _namespace_inode("self")
        for _ in range(500):  # the sandbox unshares right after it starts
            if _namespace_inode(sandbox_pid) != node:
                break
            await asyncio.sleep(0.01)
        else:
            msg = f"sandbox {sandbox_pid} never entered a network namespace of its own"
            raise NetworkError(msg)
        self._veths += 1
        veth = f"veth{self._veths:05d}"
        ip = str(next(self._pod_ips))
        await _ip(
            f"link add {veth} type veth peer name eth0 netns {sandbox_pid}",
            f"link set {veth} master {BRIDGE} up",
        )
        await _ip(
            "link set lo up",
            f"addr add {ip}/{POD_CIDR.prefixlen} dev eth0",
            "link set eth0 up",
            f"route add default via {GATEWAY}",
            netns_pid=sandbox_pid,
        )
        return Attachment(ip=ip, veth=veth)


def service_names(name: str, namespace: str) -> list[str]:
    """Every name cluster DNS answers for a Service."""
    return [
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}",
    ]


def hosts_file(
    *,
    pod_ip: str,
    hostname: str,
    services: Mapping[str, str],
    namespace: str,
    outside: Mapping[str, str],
    aliases: Iterable[Mapping[str, object]] = (),
) -> str:
    """The pod's ``/etc/hosts``: the kubelet's own lines, then the names DNS would answer."""
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
        f"{pod_ip}\t{hostname}",
    ]
    extra = list(aliases)
    if extra:
        lines.append("# Entries added by HostAliases.")
        lines += [f"{a['ip']}\t{' '.join(map(str, a['hostnames']))}" for a in extra]  # type: ignore[call-overload]
    lines.append("# Cluster DNS (chart-run): Services of the namespace.")
    lines += [
        f"{ip}\t{' '.join(service_names(n, namespace))}" for n, ip in sorted(services.items())
    ]
    lines.append("# Upstream DNS (chart-run): the world outside the cluster.")
    lines += [f"{ip}\t{name}" for name, ip in sorted(outside.items())]
    return "\n".join(lines) + "\n"


def resolv_conf(namespace: str) -> str:
    """The pod's ``/etc/resolv.conf``: the cluster's search path (names come from hosts)."""
    return (
        f"search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
        "options ndots:5\n"
    )
