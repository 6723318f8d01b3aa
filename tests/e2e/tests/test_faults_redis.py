"""Faults past one Redis, under steady chat load across two realtime replicas.

- The Sentinel primary SIGKILLed while rooms chat and sign-ups enqueue welcome mails: the
  Sentinels promote the replica and every service follows it without a restart; every
  message acknowledged to its sender reaches every member exactly once, in order; every
  sign-up that was accepted gets its one welcome mail; readiness fails only during the
  gap.
- A Redis Cluster primary SIGKILLed while two rooms chat, one on its slots and one on
  another node's: its replica takes the slots over, the first room recovers with nothing
  lost or repeated, and the other never notices (no reconnect, no pause).
- One busy room's hash slot migrated to another primary while it and two other rooms chat
  (one on the same node, one on the target): the replicas follow the room to its new node
  with nothing lost or repeated, and the other rooms keep their connections.

Each runs a system of its own in the Redis mode it needs (module-scoped: the main suite's
system stays on one Redis), and prints how long the failover took and what was lost.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.crc import key_slot

from chorus_client import Backoff, RoomClient
from chorus_common.events import CLUSTER, room_channel
from chorus_devstack.nginx import nginx_binary
from chorus_devstack.stack import Ports, Stack, StackOptions
from chorus_e2e.accounts import PASSWORD, client_address, sign_up, unique_email
from chorus_e2e.chat import assert_exactly_once, metric_value, under_load
from chorus_e2e.polling import eventually
from chorus_e2e.system import REALTIME_ENV, SHARED_ENV, WORKER_ENV

SERVICES = ("api", "realtime-1", "realtime-2", "llm-gateway-1", "worker")


def _system(mode: str) -> Iterator[Stack]:
    if nginx_binary() is None:
        pytest.fail("nginx must be installed: run `make e2e`, which installs it")
    state_dir = Path(tempfile.mkdtemp(prefix=f"chorus-e2e-{mode}-"))
    system = Stack(
        StackOptions(
            state_dir=state_dir,
            ports=Ports.free(),
            realtime_replicas=2,
            gateway_replicas=1,
            nginx=True,
            prometheus=False,
            redis_mode=mode,
            # Room history long enough for a failover's gap at this load, to replay it.
            shared_env={**SHARED_ENV, "HISTORY_SIZE": "1000"},
            extra_env={"realtime": REALTIME_ENV, "worker": WORKER_ENV},
        )
    )
    try:
        system.start()
        yield system
    finally:
        system.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def sentinel_system() -> Iterator[Stack]:
    """The system with its Redis behind three Sentinels (a primary and a replica)."""
    yield from _system("sentinel")


@pytest.fixture(scope="module")
def cluster_system() -> Iterator[Stack]:
    """The system with its channels on a Redis Cluster of three primaries and replicas."""
    yield from _system("cluster")


async def _clients(http: httpx.AsyncClient, ingress: str, room: str) -> list[RoomClient]:
    users = [await sign_up(http, name) for name in ("ann", "ben", "cat")]
    clients = [
        RoomClient([ingress], room, u.token, backoff=Backoff(base=0.05, cap=0.5)) for u in users
    ]
    for client in clients:
        await client.start()
        await client.wait_subscribed()
    return clients


@dataclass
class Probes:
    """Every service's readiness, sampled every 100 ms while a fault runs."""

    stack: Stack
    samples: list[tuple[float, str, int]] = field(default_factory=list)

    async def run(self, ops: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name in SERVICES:
                try:
                    status = (await ops.get(f"{self.stack.url(name)}/readyz")).status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append((time.monotonic(), name, status))
            await asyncio.sleep(0.1)

    def failing(self) -> list[tuple[float, str, int]]:
        return [s for s in self.samples if s[2] != 200]


@dataclass
class SignUps:
    """A stream of sign-ups (each enqueues a welcome mail): the accepted ones are kept."""

    accepted: list[str] = field(default_factory=list)
    refused: int = 0

    async def run(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            email = unique_email("joiner")
            try:
                response = await http.post(
                    "/api/auth/register",
                    json={"email": email, "password": PASSWORD, "full_name": "Joiner"},
                    headers=client_address(),
                )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 202:
                self.accepted.append(email)
            else:
                # Refused while Redis fails over: a clear 503, never an accepted job lost.
                assert response is None or response.status_code == 503, response.text
                self.refused += 1
            await asyncio.sleep(0.2)


def _pids(stack: Stack) -> dict[str, int | None]:
    return {name: stack.processes[name].pid for name in SERVICES}


async def _all_ready(stack: Stack, ops: httpx.AsyncClient) -> None:
    for name in SERVICES:
        await eventually(
            lambda name=name: ops.get(f"{stack.url(name)}/readyz"),  # type: ignore[misc]
            until=lambda r: r.status_code == 200,
            timeout=60,
            what=f"{name} ready",
        )


@pytest.fixture
async def clients_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as ops:
        yield ops


async def test_sentinel_primary_sigkilled_under_chat_and_jobs_loses_nothing(
    sentinel_system: Stack, clients_http: httpx.AsyncClient
) -> None:
    stack, ops = sentinel_system, clients_http
    assert stack.sentinel is not None
    ingress = stack.url("ingress")
    room = f"failover-{os.urandom(4).hex()}"
    async with httpx.AsyncClient(base_url=ingress, timeout=15) as http:
        clients = await _clients(http, ingress, room)
        before = _pids(stack)
        probes, signups = Probes(stack), SignUps()
        stop = asyncio.Event()
        background = [
            asyncio.create_task(probes.run(ops, stop)),
            *(asyncio.create_task(signups.run(http, stop)) for _ in range(3)),
        ]
        killed = stack.sentinel.primary_name()
        times: dict[str, float] = {}

        async def kill_the_primary() -> None:
            old = stack.sentinel.primary()  # type: ignore[union-attr]
            times["kill"] = time.monotonic()
            stack.processes[killed].kill()
            waited = await asyncio.to_thread(
                stack.sentinel.wait_for_primary,  # type: ignore[union-attr]
                other_than=old,
            )
            times["promoted"] = times["kill"] + waited

        try:
            sent, acked = await under_load(clients, kill_the_primary)
            await _all_ready(stack, ops)
            times["ready"] = time.monotonic()
            stop.set()
            await asyncio.gather(*background)
            assert_exactly_once(clients, sent, acked)
        finally:
            stop.set()
            for client in clients:
                await client.stop()
            stack.start_again(killed)
            stack.sentinel.rejoin(killed)

        # Every accepted sign-up's welcome job ran: one mail each.
        assert signups.accepted
        sink = stack.url("smtp-sink")

        async def inbox() -> list[str]:
            items = (await ops.get(f"{sink}/messages")).json()["items"]
            return [rcpt for m in items for rcpt in m["rcpt_to"]]

        mails = await eventually(
            inbox,
            until=lambda got: set(signups.accepted) <= set(got),
            timeout=60,
            what="a welcome mail for every accepted sign-up",
        )
        assert all(mails.count(email) == 1 for email in signups.accepted)
        # Readiness failed only between the kill and the recovery, and never since.
        failing = probes.failing()
        assert all(times["kill"] <= t <= times["ready"] for t, _, _ in failing), failing
        assert _pids(stack) == before, "a service was restarted"
        await asyncio.to_thread(stack.sentinel.wait_healthy)

    lost = len(acked - set().union(*(set(c.messages()) for c in clients)))
    print(
        f"\nsentinel failover: promoted in {times['promoted'] - times['kill']:.2f}s, "
        f"every service ready {times['ready'] - times['kill']:.2f}s after the kill; "
        f"{len(acked)} messages acknowledged, {lost} lost, 0 duplicates; "
        f"{len(signups.accepted)} sign-ups accepted ({signups.refused} refused), "
        f"{len(signups.accepted)} welcome mails; readiness failures: {len(failing)}"
    )


def _rooms_on_two_nodes(stack: Stack) -> tuple[str, str]:
    """Two room names whose channels two different cluster primaries serve."""
    assert stack.cluster is not None

    def owner(room: str) -> str:
        return stack.cluster.primary_of(CLUSTER.stream(room_channel(room)))  # type: ignore[union-attr]

    first = f"victim-{os.urandom(4).hex()}"
    while True:
        other = f"bystander-{os.urandom(4).hex()}"
        if owner(other) != owner(first):
            return first, other


async def test_cluster_primary_sigkilled_its_rooms_recover_and_others_never_notice(
    cluster_system: Stack, clients_http: httpx.AsyncClient
) -> None:
    stack, ops = cluster_system, clients_http
    assert stack.cluster is not None
    ingress = stack.url("ingress")
    victim_room, bystander_room = _rooms_on_two_nodes(stack)
    killed = stack.cluster.primary_of(CLUSTER.stream(room_channel(victim_room)))
    async with httpx.AsyncClient(base_url=ingress, timeout=15) as http:
        victims = await _clients(http, ingress, victim_room)
        bystanders = await _clients(http, ingress, bystander_room)
        before = _pids(stack)
        promoted = asyncio.Event()
        times: dict[str, float] = {}
        heard: list[int] = []

        async def kill_the_owner() -> None:
            heard.append(len(bystanders[0].messages()))
            times["kill"] = time.monotonic()
            stack.processes[killed].kill()
            waited = await asyncio.to_thread(
                stack.cluster.wait_for_primary,  # type: ignore[union-attr]
                CLUSTER.stream(room_channel(victim_room)),
                other_than=killed,
            )
            times["promoted"] = times["kill"] + waited
            heard.append(len(bystanders[0].messages()))
            promoted.set()

        async def meanwhile() -> None:
            await promoted.wait()

        try:
            (sent, acked), (other_sent, other_acked) = await asyncio.gather(
                under_load(victims, kill_the_owner), under_load(bystanders, meanwhile)
            )
            assert_exactly_once(victims, sent, acked)
            assert_exactly_once(bystanders, other_sent, other_acked)
            # The other room kept chatting through the failover, on the same connections.
            assert heard[1] > heard[0] + 10, heard
            assert all(c.connects == 1 for c in bystanders)
            await _all_ready(stack, ops)
            assert _pids(stack) == before, "a service was restarted"
        finally:
            for client in [*victims, *bystanders]:
                await client.stop()
            stack.start_again(killed)
            await asyncio.to_thread(stack.cluster.wait_healthy)

    print(
        f"\ncluster failover: {killed}'s replica took its slots over in "
        f"{times['promoted'] - times['kill']:.2f}s; the victim room: {len(acked)} "
        f"acknowledged, 0 lost, 0 duplicates; the other room: {len(other_acked)} "
        f"acknowledged, {heard[1] - heard[0]} received during the failover, no reconnect"
    )


def _rooms_for_a_migration(stack: Stack) -> tuple[str, str, str, str]:
    """A room to move, a room on the same primary in another slot, a room on the primary
    it moves to, and that primary's name."""
    assert stack.cluster is not None
    cluster = stack.cluster

    def key(room: str) -> str:
        return CLUSTER.stream(room_channel(room))

    def fresh(prefix: str) -> str:
        return f"{prefix}-{os.urandom(4).hex()}"

    moving = fresh("moving")
    source = cluster.primary_of(key(moving))
    target = next(name for name in cluster.primaries() if name != source)
    neighbour = fresh("neighbour")
    while cluster.primary_of(key(neighbour)) != source or key_slot(
        key(neighbour).encode()
    ) == key_slot(key(moving).encode()):
        neighbour = fresh("neighbour")
    settled = fresh("settled")
    while cluster.primary_of(key(settled)) != target:
        settled = fresh("settled")
    return moving, neighbour, settled, target


async def _realtime_counter(stack: Stack, ops: httpx.AsyncClient, name: str) -> float:
    """A counter summed over both realtime replicas."""
    total = 0.0
    for replica in ("realtime-1", "realtime-2"):
        text = (await ops.get(f"{stack.url(replica)}/metrics")).text
        total += metric_value(text, name)
    return total


@dataclass
class Pauses:
    """When each client last received a message, sampled every 10 ms: the longest silence
    each saw while the fault ran (a measurement only; nothing waits on it)."""

    clients: list[RoomClient]
    longest: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        counts = [len(c.messages()) for c in self.clients]
        last = [time.monotonic()] * len(self.clients)
        self.longest = [0.0] * len(self.clients)
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            for i, client in enumerate(self.clients):
                count = len(client.messages())
                if count != counts[i]:
                    counts[i], last[i] = count, now
                self.longest[i] = max(self.longest[i], now - last[i])


async def test_a_busy_rooms_slot_migrated_under_load_loses_nothing_and_others_never_notice(
    cluster_system: Stack, clients_http: httpx.AsyncClient
) -> None:
    stack, ops = cluster_system, clients_http
    assert stack.cluster is not None
    cluster = stack.cluster
    ingress = stack.url("ingress")
    moving, neighbour, settled, target = _rooms_for_a_migration(stack)
    key = CLUSTER.stream(room_channel(moving))
    slot = key_slot(key.encode())
    source = cluster.primary_of(key)
    async with httpx.AsyncClient(base_url=ingress, timeout=15) as http:
        movers = await _clients(http, ingress, moving)
        others = {room: await _clients(http, ingress, room) for room in (neighbour, settled)}
        before = _pids(stack)
        moves_before = await _realtime_counter(stack, ops, "chorus_realtime_channel_moves_total")
        stop_sampling = asyncio.Event()
        pauses = {room: Pauses(clients) for room, clients in [(moving, movers), *others.items()]}
        samplers = [asyncio.create_task(p.run(stop_sampling)) for p in pauses.values()]
        moved = asyncio.Event()
        times: dict[str, float] = {}
        keys: list[int] = []

        async def migrate() -> None:
            times["start"] = time.monotonic()
            # One key per MIGRATE: the slot spends longest half-moved, with its stream on
            # one node and its epoch or presence on the other.
            keys.append(await asyncio.to_thread(cluster.migrate_slot, slot, target, batch=1))
            times["moved"] = time.monotonic()
            moved.set()

        async def meanwhile() -> None:
            await moved.wait()

        try:
            results = await asyncio.gather(
                under_load(movers, migrate),
                *(under_load(clients, meanwhile) for clients in others.values()),
            )
            stop_sampling.set()
            await asyncio.gather(*samplers)
            for clients, (sent, acked) in zip([movers, *others.values()], results, strict=True):
                assert_exactly_once(clients, sent, acked)
            # The room lives on its new primary now, and the replicas followed it there:
            # the fresh batch under_load waited for was published and heard on that node.
            assert cluster.primary_of(key) == target
            assert keys[0] >= 2, keys  # at least the stream and its epoch moved
            moves = (
                await _realtime_counter(stack, ops, "chorus_realtime_channel_moves_total")
                - moves_before
            )
            assert moves >= 1, "no replica resubscribed the room on its new node"
            # The other rooms kept their sockets: the move was not theirs to notice.
            assert all(c.connects == 1 for clients in others.values() for c in clients)
            await _all_ready(stack, ops)
            assert _pids(stack) == before, "a service was restarted"
        finally:
            stop_sampling.set()
            for client in [*movers, *(c for clients in others.values() for c in clients)]:
                await client.stop()

    acked_moving = len(results[0][1])
    print(
        f"\nslot migration: slot {slot} ({keys[0]} keys, one per MIGRATE) moved from "
        f"{source} to {target} in {times['moved'] - times['start']:.3f}s under load; the "
        f"moved room: {acked_moving} acknowledged, 0 lost, 0 duplicates, longest silence a "
        f"member saw {max(pauses[moving].longest):.2f}s, {moves:.0f} channel move(s) in the "
        f"replicas; the room on the same node "
        f"{max(pauses[neighbour].longest):.2f}s, the room on the target "
        f"{max(pauses[settled].longest):.2f}s (no reconnect); chat at 8 messages/s per member"
    )
