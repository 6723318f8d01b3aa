"""Tracing's cost: the gateway and realtime with tracing off, on at 10% and on at 100%.

    .venv/bin/python bench/tracing.py [--runs 2] [--json-out PATH]

One run starts Redis, the mock OpenAI upstream and the devstack's OTLP receiver (a real
OTLP/HTTP endpoint, decoding every export), then measures each mode in turn — modes
interleaved, a fresh pair of service processes per mode. Both start, connect their load
and send a traced warm-up before either is measured (start-ups and the exporters' first
batch, ``OTEL_BSP_SCHEDULE_DELAY``, overlap); the gateway is then measured while realtime
idles, and realtime while the gateway idles:

- **gateway**: ``--gateway-rate`` requests/s (a fixed rate, the same in every mode) over
  ``--streams`` keep-alive connections stream completions (16 tokens each, mock TTFT 0)
  for ``--seconds``; figure: the gateway process's CPU time per completed request
  (psutil). Requests carry no ``traceparent``, so at 10% the gateway samples a tenth of
  them itself, as a cluster's entry point would.
- **realtime**: ``--subscribers`` WebSocket clients in one room (a load generator of its
  own) while a publisher process publishes ``--events`` events at ``--rate``/s through
  ``EventBus.publish``, traced with the same sampler (so envelopes carry a ``traceparent``,
  sampled at the mode's ratio, as the worker's and realtime's own do); figure: the
  realtime process's CPU time per delivery (events received by the clients).

Off is ``OTEL_EXPORTER_OTLP_ENDPOINT`` unset; 10% is ``parentbased_traceidratio`` with
``OTEL_TRACES_SAMPLER_ARG=0.1``; 100% is ``parentbased_always_on``. The rows give each
mode's CPU per request/delivery against off (target: ≤ 1.05x at 10%). The machine is
shared: compare the ratios of one run, and read the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis as redis_sync
from gateway_llm import cpu_seconds

from chorus_common.rooms import LOADED_KEY
from chorus_common.tokens import TokenService
from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningMockOpenAI, RunningOtlpReceiver, RunningRedis

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789-0123456789-0123456789"
BENCH_KEY = "bench-key-0123456789"
#: Mode name → the OTEL_* variables of every process in it.
MODES: dict[str, dict[str, str]] = {
    "off": {},
    "10%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}
TARGET_RATIO = 1.05


def otel_env(mode: str, receiver: RunningOtlpReceiver) -> dict[str, str]:
    """The environment of a process in ``mode`` (no OTEL_* at all when off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if MODES[mode]:
        env.update(MODES[mode], OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
    return env


def start_service(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m module``, started (not yet ready: see ``wait_ready``)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )


def stop_services(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT every service at once, then wait for them together (SIGKILL after 20 s)."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 20
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> psutil.Process:
    """Until the service on ``port`` answers /readyz (a run's six start side by side: on a
    loaded machine that may take a while)."""
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return psutil.Process(process.pid)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.args!r} not ready; see {log}")
        time.sleep(0.1)


def helper(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """This script in a helper role (load generator, publisher), on pipes."""
    return subprocess.Popen(
        [sys.executable, __file__, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def stop_helper(child: subprocess.Popen[str]) -> None:
    """A helper that has not finished (a measurement failed or never ran): killed."""
    if child.poll() is None:
        child.kill()
        child.wait()


def handshake(child: subprocess.Popen[str]) -> None:
    """Wait for the helper's READY."""
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "READY":
        raise RuntimeError(f"helper: {line!r}")


def finish(child: subprocess.Popen[str], command: str = "go") -> dict[str, Any]:
    """Tell the helper ``command``; its JSON answer."""
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write(command + "\n")
    child.stdin.flush()
    answer: dict[str, Any] = json.loads(child.stdout.readline())
    child.wait(timeout=60)
    return answer


# -- the gateway ---------------------------------------------------------------------------------


def warm_up_trace(mode: str) -> tuple[str, str]:
    """A sampled ``(traceparent, trace id)`` for a mode's warm-up; empty when off."""
    if not MODES[mode]:
        return "", ""
    trace_id = os.urandom(16).hex()
    return f"00-{trace_id}-{os.urandom(8).hex()}-01", trace_id


def wait_for_export(receiver: RunningOtlpReceiver, trace_id: str, service: str) -> None:
    """Until ``service`` has exported the warm-up trace: its exporter's first POST (which
    loads the HTTP client and the protobuf encoders) is then behind the measurement."""
    if not trace_id:
        return
    deadline = time.monotonic() + 30
    while not receiver.spans(trace_id=trace_id, service=service):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service} exported nothing of its warm-up trace")
        time.sleep(0.2)


def gateway_request(port: int, traceparent: str = "") -> bytes:
    """A streamed completion of 16 tokens, with ``traceparent`` when given."""
    body = json.dumps(
        {
            "model": "mock-gpt",
            "messages": [{"role": "user", "content": "bench [mock tokens=16]"}],
            "stream": True,
        }
    ).encode()
    trace = f"traceparent: {traceparent}\r\n" if traceparent else ""
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {BENCH_KEY}\r\nContent-Type: application/json\r\n{trace}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def stream_once(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> None:
    """One streamed completion on a kept-alive connection, read to its last chunk."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:200].decode(errors="replace"))
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


async def gateway_load(
    port: int, streams: int, seconds: float, rate: float, warm: str
) -> dict[str, Any]:
    """``rate`` requests/s over ``streams`` connections for ``seconds``; requests completed.

    The rate is fixed (open loop) so that every mode serves the same load: CPU per request
    falls as a busier event loop batches more work per turn, so a closed loop would credit
    whichever mode happened to get more of a shared machine. A connection whose answer
    comes late starts its next request at once. Each connection first streams one
    warm-up request, traced (``warm``) when tracing is on.
    """
    request = gateway_request(port)
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(streams)]
    for reader, writer in connections:
        await stream_once(reader, writer, gateway_request(port, warm))
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "refresh":
        # Connections the gateway closed while they idled (its keep-alive timeout, while the
        # other modes started and were measured): opened again and warmed up, untraced.
        for i, (reader, writer) in enumerate(connections):
            if reader.at_eof():
                writer.close()
                connections[i] = await asyncio.open_connection("127.0.0.1", port)
                await stream_once(*connections[i], request)
        print("READY", flush=True)
    done = 0
    start = loop.time()
    interval = streams / rate  # between two requests of one connection

    async def worker(
        offset: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal done
        due = start + offset
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            await stream_once(reader, writer, request)
            done += 1
            due += interval

    tasks = [asyncio.create_task(worker(i / rate, r, w)) for i, (r, w) in enumerate(connections)]
    finished, _ = await asyncio.wait(tasks, timeout=seconds)
    for task in finished:
        task.result()
    for task in tasks:
        task.cancel()
    for _, writer in connections:
        writer.close()
    return {"requests": done}


def service_env(
    mode: str, receiver: RunningOtlpReceiver, port: int, redis_url: str
) -> dict[str, str]:
    """What a service under test runs with in ``mode``, before its own settings."""
    return otel_env(mode, receiver) | {
        "ENV": "dev",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false",
        "REDIS_URL": redis_url,
    }


def gateway_env(
    mode: str, receiver: RunningOtlpReceiver, port: int, redis_url: str, mock_url: str
) -> dict[str, str]:
    big = 10**9
    return service_env(mode, receiver, port, redis_url) | {
        "LLM_PROVIDERS": json.dumps(
            {
                "providers": [
                    {
                        "name": "mock",
                        "base_url": f"{mock_url}/v1",
                        "api_key": "sk-mock",
                        "models": ["mock-gpt"],
                    }
                ]
            }
        ),
        "GATEWAY_API_KEYS": json.dumps(
            [
                {
                    "name": "bench",
                    "key": BENCH_KEY,
                    "requests_per_minute": big,
                    "tokens_per_minute": big,
                    "concurrent_streams": 100_000,
                }
            ]
        ),
    }


def measure_gateway(mode: str, process: psutil.Process, load: subprocess.Popen[str]) -> float:
    """CPU microseconds of the gateway per streamed request, its load generator ready."""
    assert load.stdin is not None
    load.stdin.write("refresh\n")
    load.stdin.flush()
    handshake(load)
    before = cpu_seconds(process)
    result = finish(load)
    used = cpu_seconds(process) - before
    requests = int(result["requests"])
    per = used / requests * 1e6 if requests else float("nan")
    print(f"  gateway   {mode:>4}: {requests:6d} requests, {per:7.1f} µs CPU each", flush=True)
    return per


async def subscribers_load(port: int, count: int, room: str) -> dict[str, Any]:
    """``count`` sockets in ``room``; frames received per socket until told to stop."""
    from websockets.asyncio.client import connect  # noqa: PLC0415 - the helper's only

    tokens = TokenService(secret=SECRET, issuer="chorus")
    received = 0
    sockets = []
    for i in range(count):
        socket = await connect(
            f"ws://127.0.0.1:{port}/ws/{room}",
            subprotocols=["chorus.v1", f"bearer.{tokens.issue(str(20_000 + i))}"],  # type: ignore[list-item]
            max_queue=None,
        )
        while '"subscribed"' not in str(await socket.recv()):
            pass
        sockets.append(socket)

    async def read(socket: Any) -> None:
        nonlocal received
        async for frame in socket:
            if '"type":"bench"' in frame:
                received += 1

    readers = [asyncio.create_task(read(s)) for s in sockets]
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for task in readers:
        task.cancel()
    for socket in sockets:
        await socket.close()
    return {"received": received}


async def publish_events(
    redis_url: str, room: str, events: int, rate: float, warm: str
) -> dict[str, Any]:
    """Publish ``events`` at ``rate``/s into ``room`` through the EventBus, traced as
    configured.

    First one ``warmup`` event (not counted by the clients), in the sampled trace ``warm``
    when tracing is on.
    """
    from opentelemetry import context  # noqa: PLC0415
    from redis.asyncio import Redis  # noqa: PLC0415

    from chorus_common.events import EventBus  # noqa: PLC0415
    from chorus_common.settings import ServiceSettings  # noqa: PLC0415
    from chorus_common.trace_context import context_from_traceparent  # noqa: PLC0415
    from chorus_common.tracing import configure_tracing, shutdown_tracing  # noqa: PLC0415

    configure_tracing(ServiceSettings(env="dev"), service="bench-publisher")
    redis = Redis.from_url(redis_url)
    bus = EventBus(redis, history_size=1000, history_ttl=600)
    parent = context_from_traceparent(warm)
    token = context.attach(parent) if parent is not None else None
    await bus.publish(f"room:{room}", "warmup", {}, sender="bench")
    if token is not None:
        context.detach(token)
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(events):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        await bus.publish(f"room:{room}", "bench", {"n": i}, sender="bench")
    await redis.aclose()
    shutdown_tracing()
    return {"published": events}


def realtime_env(
    mode: str, receiver: RunningOtlpReceiver, port: int, redis_url: str
) -> dict[str, str]:
    return service_env(mode, receiver, port, redis_url) | {
        "JWT_SECRET": SECRET,
        "INSTANCE_ID": f"bench-{mode}",
        "MAX_CONNECTIONS_PER_USER": "100000",
        "SEND_QUEUE_MAX_MESSAGES": "100000",
        "SEND_QUEUE_MAX_BYTES": "100000000",
    }


def measure_realtime(
    mode: str,
    process: psutil.Process,
    load: subprocess.Popen[str],
    publisher: subprocess.Popen[str],
    args: Any,
) -> float:
    """CPU nanoseconds of realtime per delivery, its subscribers and publisher ready."""
    before = cpu_seconds(process)
    finish(publisher)
    expected = args.events * args.subscribers
    deadline = time.monotonic() + 30
    # Until realtime has nothing left to write (its CPU goes quiet), then count.
    last = cpu_seconds(process)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = cpu_seconds(process)
        if now - last < 0.01:
            break
        last = now
    used = cpu_seconds(process) - before
    received = int(finish(load, "stop")["received"])
    per = used / received * 1e9 if received else float("nan")
    print(
        f"  realtime  {mode:>4}: {received:7d} of {expected} deliveries, {per:7.0f} ns CPU each",
        flush=True,
    )
    return per


@dataclass
class Mode:
    """One mode's services and helpers, started; measured later (``measure_mode``)."""

    name: str
    gateway: psutil.Process
    realtime: psutil.Process
    gw_load: subprocess.Popen[str]
    rt_load: subprocess.Popen[str]
    publisher: subprocess.Popen[str]


def start_modes(
    modes: list[str],
    receiver: RunningOtlpReceiver,
    redis_url: str,
    mock_url: str,
    args: Any,
    work: Path,
    stack: contextlib.ExitStack,
    run: int,
) -> list[Mode]:
    """Every mode of a run, started side by side and warmed up, none measured yet.

    All the services start at once, then every load generator connects and sends its
    traced warm-up, and every exporter's first batch (``OTEL_BSP_SCHEDULE_DELAY`` after the
    warm-up) is waited for together: start-ups and first exports overlap across the modes
    instead of being waited out mode after mode. Each mode has its own room, so a
    publisher's events reach only its own mode's realtime. While one mode is measured the
    others idle, and each figure is its own process's CPU time, so an idle one adds none
    to it.
    """
    services: list[subprocess.Popen[bytes]] = []
    stack.callback(stop_services, services)
    ports: dict[str, tuple[int, int]] = {}
    for mode in modes:
        gw_port, rt_port = free_port(), free_port()
        ports[mode] = gw_port, rt_port
        tag = f"{mode.rstrip('%')}-{run}"
        gw_env = gateway_env(mode, receiver, gw_port, redis_url, mock_url)
        services.append(start_service("chorus_gateway", gw_env, work / f"gateway-{tag}.log"))
        rt_env = realtime_env(mode, receiver, rt_port, redis_url)
        services.append(start_service("chorus_realtime", rt_env, work / f"realtime-{tag}.log"))
    helpers: dict[str, tuple[subprocess.Popen[str], subprocess.Popen[str]]] = {}
    processes: dict[str, tuple[psutil.Process, psutil.Process]] = {}
    traces: dict[str, tuple[str, str, str, str]] = {}
    for index, mode in enumerate(modes):
        gw_port, rt_port = ports[mode]
        tag = f"{mode.rstrip('%')}-{run}"
        gw_popen, rt_popen = services[2 * index], services[2 * index + 1]
        processes[mode] = (
            wait_ready(gw_popen, gw_port, work / f"gateway-{tag}.log"),
            wait_ready(rt_popen, rt_port, work / f"realtime-{tag}.log"),
        )
        gw_trace, gw_trace_id = warm_up_trace(mode)
        rt_trace, rt_trace_id = warm_up_trace(mode)
        traces[mode] = gw_trace, gw_trace_id, rt_trace, rt_trace_id
        gw_load = helper(
            "--loadgen", "gateway", "--port", str(gw_port), "--streams", str(args.streams),
            "--gateway-rate", str(args.gateway_rate),
            "--seconds", str(args.seconds), "--traceparent", gw_trace,
        )  # fmt: skip
        stack.callback(stop_helper, gw_load)
        rt_load = helper("--loadgen", "realtime", "--port", str(rt_port), "--subscribers",
                         str(args.subscribers), "--room", room_of(mode))  # fmt: skip
        stack.callback(stop_helper, rt_load)
        helpers[mode] = gw_load, rt_load
    result = []
    for mode in modes:
        gw_load, rt_load = helpers[mode]
        gw_trace, gw_trace_id, rt_trace, rt_trace_id = traces[mode]
        handshake(rt_load)
        # The publisher's warm-up event must find the subscribers in the room.
        publisher = helper(
            "--publish", redis_url, "--room", room_of(mode), "--events", str(args.events),
            "--rate", str(args.rate), "--traceparent", rt_trace,
            env=otel_env(mode, receiver) | {"ENV": "dev"},
        )  # fmt: skip
        stack.callback(stop_helper, publisher)
        result.append(Mode(mode, *processes[mode], gw_load, rt_load, publisher))
    for entry in result:
        handshake(entry.gw_load)
        handshake(entry.publisher)
    for mode in modes:
        _, gw_trace_id, _, rt_trace_id = traces[mode]
        wait_for_export(receiver, gw_trace_id, "chorus-llm-gateway")
        wait_for_export(receiver, rt_trace_id, "chorus-realtime")
    return result


def room_of(mode: str) -> str:
    """The mode's own room."""
    return f"traced-{list(MODES).index(mode)}"


def measure_mode(entry: Mode, args: Any) -> tuple[float, float]:
    """(gateway µs CPU per request, realtime ns CPU per delivery) of a started mode: the
    gateway first (realtime idle), then realtime (the gateway idle)."""
    return (
        measure_gateway(entry.name, entry.gateway, entry.gw_load),
        measure_realtime(entry.name, entry.realtime, entry.rt_load, entry.publisher, args),
    )


# -- the run -------------------------------------------------------------------------------------


def row(figure: str, unit: str, off: list[float], on: list[float], target: str) -> dict[str, Any]:
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    ratio = statistics.median(ratios)
    met = None if target == "info" else ratio <= TARGET_RATIO
    return {
        "figure": figure,
        "peer": "tracing off",
        "peer_value": statistics.median(off),
        "peer_spread": [min(off), max(off)],
        "chorus": statistics.median(on),
        "chorus_spread": [min(on), max(on)],
        "unit": unit,
        "ratio": ratio,
        "target": target,
        "met": met,
        "note": f"ratio = CPU per unit with tracing / without, per run: "
        f"{', '.join(f'{r:.3f}' for r in ratios)}",
    }


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    load_before = os.getloadavg()
    gateway: dict[str, list[float]] = {mode: [] for mode in MODES}
    realtime: dict[str, list[float]] = {mode: [] for mode in MODES}
    print(
        f"gateway: {args.gateway_rate:g} requests/s on {args.streams} streams for "
        f"{args.seconds:g}s; realtime: {args.subscribers} "
        f"sockets, {args.events} events at {args.rate:g}/s; {args.runs} runs, modes interleaved "
        f"(load average {load_before[0]:.1f})",
        flush=True,
    )
    redis = RunningRedis(work / "redis")
    mock = RunningMockOpenAI(work / "mock")
    receiver = RunningOtlpReceiver(work / "otlp")
    with contextlib.ExitStack() as stack:
        for server in (redis, mock, receiver):
            server.start()
            stack.callback(server.stop)
        # What the api does at startup: the rooms' access lists are in Redis (there are none
        # here), so realtime lets the sockets into the bench's room, which exists by name.
        with redis_sync.Redis.from_url(redis.url) as client:
            client.set(LOADED_KEY, "1")
        order = list(MODES)
        for run in range(args.runs):
            print(f"run {run + 1}", flush=True)
            with contextlib.ExitStack() as modes:
                started = time.monotonic()
                entries = start_modes(order, receiver, redis.url, mock.url, args, work, modes, run)
                print(f"  every mode started in {time.monotonic() - started:.0f} s", flush=True)
                for entry in entries:
                    per_request, per_delivery = measure_mode(entry, args)
                    gateway[entry.name].append(per_request)
                    realtime[entry.name].append(per_delivery)
            order.reverse()
        exported = receiver.stats()
    load_after = os.getloadavg()
    rows = []
    for mode, target in (("10%", f"<= {TARGET_RATIO}x"), ("100%", "info")):
        rows.append(
            row(
                f"Gateway CPU per streamed request, tracing on at {mode} (vs off)",
                "µs CPU/request",
                gateway["off"],
                gateway[mode],
                target,
            )
        )
        rows.append(
            row(
                f"Realtime CPU per delivery, tracing on at {mode} (vs off)",
                "ns CPU/delivery",
                realtime["off"],
                realtime[mode],
                target,
            )
        )
    result = {
        "bench": "tracing",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_split": (
            "not pinned: the service under test, Redis, the mock upstream, the OTLP receiver, "
            "the load generator and the publisher share the machine's 2 CPUs with other work "
            f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after); "
            f"figures use the service's own CPU time; {exported['spans']} spans exported"
        ),
        "rows": rows,
    }
    for r in rows:
        print(f"{r['figure']}: {r['peer_value']:.1f} -> {r['chorus']:.1f} ({r['ratio']:.3f}x)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)  # kept when a run fails: its logs are there


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--gateway-rate", type=float, default=200.0, help="requests/s")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--events", type=int, default=1200)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--timeout", type=float, default=None, help="(the harness's; unused)")
    parser.add_argument("--loadgen", choices=("gateway", "realtime"), default=None)
    parser.add_argument("--publish", metavar="REDIS_URL", default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--room", default="traced", help="(helpers) the mode's room")
    parser.add_argument("--traceparent", default="", help="(helpers) the warm-up's trace")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.loadgen == "gateway":
        warm = arguments.traceparent
        outcome = asyncio.run(
            gateway_load(
                arguments.port, arguments.streams, arguments.seconds, arguments.gateway_rate, warm
            )
        )
        print(json.dumps(outcome), flush=True)
    elif arguments.loadgen == "realtime":
        outcome = asyncio.run(
            subscribers_load(arguments.port, arguments.subscribers, arguments.room)
        )
        print(json.dumps(outcome), flush=True)
    elif arguments.publish:
        outcome = asyncio.run(
            publish_events(
                arguments.publish,
                arguments.room,
                arguments.events,
                arguments.rate,
                arguments.traceparent,
            )
        )
        print(json.dumps(outcome), flush=True)
    else:
        main(arguments)
