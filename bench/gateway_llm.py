"""LLM gateway benchmark: direct-to-mock vs the Chorus gateway, the LiteLLM proxy and Portkey.

    .venv/bin/python bench/gateway_llm.py [--runs 3] [--json-out PATH] [--skip-litellm]
                                          [--skip-portkey]

One run starts the mock OpenAI upstream, Redis (the devstack's), the Chorus gateway
(``python -m chorus_gateway``, limits on), the LiteLLM proxy (``litellm[proxy]`` from PyPI,
installed by this script into ``bench/.venvs/litellm`` with uv) and Portkey's gateway
(``@portkey-ai/gateway`` from npm, installed into ``bench/.venvs/portkey``, run by the
machine's Node), all pointed at the same mock, and measures through each:

- **TTFT**: time from sending a streamed request to its first ``data: {`` event,
  sequential, one keep-alive connection, p50 and p90 over ``--requests`` requests
  (mock TTFT 0, 16 tokens; fewer when they take over ``--max-seconds``: LiteLLM).
  Overhead = p50(target) - p50(direct). The gateway is measured twice in each run: with a
  service key (``GATEWAY_API_KEYS``) and with a virtual key carrying a monthly spend budget
  (written to Redis as the api writes it), whose admission also reserves the worst-case
  cost, before the first upstream request.
- **Non-streamed latency**: the same requests with ``"stream": false``, sequential,
  to the end of the JSON body; overhead p50 and p99 over direct.
- **Throughput**: ``--streams`` concurrent keep-alive connections streaming back to back
  for ``--seconds`` (mock ``--stream-tokens`` 50 per stream, no delays): SSE events/s delivered, and
  events/s per core of the target's own process (its CPU time from psutil).
- **Cancellation**: a client leaves a slow stream after three events; the figure is the
  time from its close to the mock noticing its own request end (the mock's record of
  when it saw the disconnect; ``time.monotonic`` is one clock for every process of the
  host), ``--cancels`` times per target after the runs (direct, the gateway, LiteLLM).
  Direct to the mock, it is the mock's own detection; through a proxy, how long the
  provider keeps generating for a client that is gone. The tests check that the
  cancellation happens; this is its budget.

**Portkey** runs twice, its code untouched. As shipped, its streaming path fails on Node 20
(``TypeError: immutable``: ``@hono/node-server`` swaps the global ``Response`` for a
lightweight one that, given a fetch ``Response`` as its init, keeps that response's
immutable headers, and Portkey then appends its own headers to them). So the non-streamed
figures come from Portkey as shipped, and the streamed ones from a second Portkey process
started with ``peers/portkey/native_response.mjs`` preloaded (``node --import``), which keeps
Node's own ``Request``/``Response``. Both get ``peers/portkey/loopback.mjs``, which binds
its listening socket to 127.0.0.1 (it would listen on every interface).

Each of ``--runs`` runs (default 3) measures the targets in turn; the summary is the
median over runs with its [min, max] spread, and ``--json-out`` writes it in the bench
result contract. The load generator is ``peers/llmload.py``, a raw asyncio HTTP/1.1
client on uvloop in its own process. The machine has 2 cores shared with other work:
numbers are noisy; compare ratios measured in the same run, not absolute figures across
runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis as redis_sync

from chorus_bench.peers import LITELLM, PORTKEY
from chorus_common.virtual_keys import Budget, KeyRecord, directory_key, new_secret, secret_digest
from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningRedis

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
RESULTS = ROOT / "bench" / "results" / "raw"
BENCH_KEY = "bench-key-0123456789"
LITELLM_KEY = "sk-bench-master-key"
MOCK_KEY = "sk-mock"
TTFT_TARGET_MS = 1.0
THROUGHPUT_TARGET_RATIO = 3.0
#: Disconnect → upstream cancel, p99: the provider stops within this of the client leaving.
CANCEL_TARGET_MS = 100.0
#: A stream the client leaves: 10 s long if nobody cancels it.
CANCEL_TOKENS = 100
CANCEL_INTER_TOKEN_MS = 100
MAX_SAMPLES = 5000
#: A budgeted virtual key may add at most this to the service key's TTFT overhead.
VKEY_EXTRA_TARGET_MS = 0.2
LABELS = {
    "direct": "direct to mock",
    "gateway": "chorus gateway",
    "gateway-vkey": "chorus gateway, budgeted virtual key",
    "litellm": "LiteLLM proxy",
    "portkey": "Portkey gateway (as shipped)",
    "portkey-native": "Portkey gateway (Node's own Response)",
}


# -- processes -----------------------------------------------------------------------------------


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s")


@dataclass
class Launch:
    """A process to start: its command, the URL that answers 200 once it is ready, its log."""

    argv: list[str]
    ready_url: str
    env: dict[str, str]
    log: Path
    timeout: float = 120.0


@contextlib.contextmanager
def spawn_all(launches: Sequence[Launch]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every process started at once, then each waited for until ready; all stopped together
    on exit. Nothing is measured before the last is ready, so one's start-up (LiteLLM's
    ~16 s of imports) overlaps the others' and costs no measurement its CPU."""
    processes: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as logs:
        try:
            for launch in launches:
                out = logs.enter_context(launch.log.open("wb"))
                processes.append(
                    subprocess.Popen(
                        launch.argv,
                        env={**os.environ, **launch.env},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                    )
                )
            for launch, process in zip(launches, processes, strict=True):
                wait_ready(launch.ready_url, process, launch.timeout)
            yield processes
        finally:
            stop_all(processes)


def stop_all(processes: Sequence[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """SIGINT every process still running at once, then wait for them together; SIGKILL
    what is left after ``grace`` seconds. Nothing is measured any more by then: a proxy
    still streaming a left request to its end (LiteLLM lets one run its 10 s) or draining
    its connections must not cost the run a shutdown timeout per process, one after the
    other."""
    running = list({p.pid: p for p in processes if p.poll() is None}.values())
    for process in running:
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def litellm_config(path: Path, mock_url: str) -> Path:
    path.write_text(
        "model_list:\n"
        "  - model_name: mock-gpt\n"
        "    litellm_params:\n"
        "      model: openai/mock-gpt\n"
        f"      api_base: {mock_url}/v1\n"
        f"      api_key: {MOCK_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "  disable_spend_logs: true\n"
    )
    return path


def portkey_argv(prefix: Path, port: int, *, native_response: bool) -> list[str]:
    """Portkey's own start script under the machine's Node, with the preloads it needs."""
    shims = PEERS / "portkey"
    preload = ["--import", (shims / "loopback.mjs").as_uri()]
    if native_response:
        preload += ["--import", (shims / "native_response.mjs").as_uri()]
    script = prefix / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    return ["node", *preload, str(script), f"--port={port}", "--headless"]


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def wait_idle(process: psutil.Process, within: float = 90.0) -> None:
    """Until ``process`` uses under a tenth of a core over a quarter of a second."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = cpu_seconds(process)
        time.sleep(0.25)
        if cpu_seconds(process) - before < 0.025:
            return


# -- the run -------------------------------------------------------------------------------------


def settle(mock: subprocess.Popen[bytes], target: Target) -> None:
    """Until the mock and ``target`` are idle again: the load generator cut its streams at
    the deadline, and a proxy may keep reading them from the mock."""
    started = time.monotonic()
    for process in (mock, target.process):
        wait_idle(psutil.Process(process.pid))
    if time.monotonic() - started > 1:
        print(f"  (waited {time.monotonic() - started:.0f} s for idle)", flush=True)


@dataclass
class Target:
    """A system to send requests through, and what to measure on it."""

    name: str
    port: int
    key: str
    process: subprocess.Popen[bytes]
    headers: list[str] = field(default_factory=list)
    streamed: bool = True
    complete: bool = True


def run_loadgen(mode: str, target: Target, args: argparse.Namespace) -> tuple[Any, float, float]:
    """Run ``peers/llmload.py``; returns (its result, target CPU seconds, its own CPU seconds)."""
    argv = [sys.executable, str(PEERS / "llmload.py"), mode, "--port", str(target.port)]
    argv += ["--key", target.key, "--requests", str(args.requests), "--warmup", str(args.warmup)]
    argv += ["--streams", str(args.streams), "--seconds", str(args.seconds)]
    argv += ["--stream-tokens", str(args.stream_tokens), "--max-seconds", str(args.max_seconds)]
    for header in target.headers:
        argv += ["--header", header]
    proxy = psutil.Process(target.process.pid)
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None
    assert child.stdout is not None
    before = cpu_seconds(proxy)
    gen_before = 0.0
    if mode == "throughput":
        line = child.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"load generator: {line}")
        before = cpu_seconds(proxy)
        gen_before = cpu_seconds(psutil.Process(child.pid))
        child.stdin.write("go\n")
        child.stdin.flush()
    out = child.stdout.readline()
    gen_cpu = cpu_seconds(psutil.Process(child.pid)) - gen_before
    used = cpu_seconds(proxy) - before
    if child.wait() != 0 or not out:
        raise RuntimeError(f"load generator failed against {target.name} ({mode})")
    return json.loads(out), used, gen_cpu


def _quantile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    target: Target, args: argparse.Namespace, *, throughput: bool, sequential: bool = True
) -> dict[str, Any]:
    """The sequential figures (unless ``sequential`` is false), then (if asked) the
    throughput: a proxy left draining the streams the load generator cut at its deadline
    must not slow the sequential ones."""
    row: dict[str, Any] = {"target": target.name}
    shown = f"  {target.name:14s}"
    started = time.monotonic()
    if target.streamed and sequential:
        samples, _, _ = run_loadgen("ttft", target, args)
        row |= {
            "ttft_p50_ms": statistics.median(samples) * 1000,
            "ttft_samples_ms": [s * 1000 for s in samples],
            "ttft_p90_ms": statistics.quantiles(samples, n=10)[-1] * 1000,
        }
        shown += f" ttft p50 {row['ttft_p50_ms']:.3f} ms p90 {row['ttft_p90_ms']:.3f} ms"
    if target.complete and sequential:
        samples, _, _ = run_loadgen("complete", target, args)
        row |= {
            "complete_p50_ms": statistics.median(samples) * 1000,
            "complete_p99_ms": _quantile(samples, 0.99) * 1000,
            "complete_samples_ms": [s * 1000 for s in samples],
        }
        shown += (
            f" | non-streamed p50 {row['complete_p50_ms']:.3f} ms "
            f"p99 {row['complete_p99_ms']:.3f} ms"
        )
    if target.streamed and throughput:
        result, cpu, gen_cpu = run_loadgen("throughput", target, args)
        rate = result["events"] / result["seconds"]
        row |= {
            "events_per_s": rate,
            "cpu_s": cpu,
            "events_per_cpu_s": result["events"] / cpu if cpu > 0 else 0.0,
            "streams_done": result["streams"],
            "loadgen_cpu_s": gen_cpu,
            "seconds": result["seconds"],
        }
        shown += (
            f" | {rate:,.0f} events/s, {row['events_per_cpu_s']:,.0f} events/s per core "
            f"(target cpu {cpu:.1f}s, loadgen cpu {gen_cpu:.1f}s)"
        )
    print(f"{shown} [{time.monotonic() - started:.0f} s]", flush=True)
    return row


async def cancel_latency(port: int, key: str, mock: httpx.AsyncClient, tag: str) -> float | None:
    """Open a slow stream, leave after three events; ms until the mock saw it end (None:
    the upstream request was never cancelled)."""
    directive = f"[mock tokens={CANCEL_TOKENS} inter_token_ms={CANCEL_INTER_TOKEN_MS} tag={tag}]"
    body = json.dumps(
        {
            "model": "mock-gpt",
            "messages": [{"role": "user", "content": f"bench {directive}"}],
            "stream": True,
        }
    ).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:200].decode(errors="replace"))
    seen = b""
    while seen.count(b"data: {") < 3:
        seen += await reader.read(65536)
    closed_at = time.monotonic()
    # The client is gone, as a closed tab or a killed app is: the FIN leaves now, not when
    # the event loop next gets to the transport's close.
    writer.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
    writer.transport.abort()
    response = await mock.get("/_mock/requests", params={"tag": tag, "wait_ms": 20_000})
    [record] = response.json()["data"]
    if record["outcome"] != "client_disconnected":
        return None
    return (float(record["disconnected_monotonic"]) - closed_at) * 1000


async def cancel_run(
    port: int, key: str, mock_url: str, count: int, label: str
) -> tuple[list[float], int]:
    """``count`` cancellations one after the other: (latencies in ms, never cancelled)."""
    samples: list[float] = []
    missed = 0
    async with httpx.AsyncClient(base_url=mock_url, timeout=30) as mock:
        for n in range(count):
            latency = await cancel_latency(port, key, mock, f"cancel-{label}-{n}")
            if latency is None:
                missed += 1
            else:
                samples.append(latency)
    return samples, missed


def gateway_env(port: int, redis_url: str, mock_url: str) -> dict[str, str]:
    providers = {
        "providers": [
            {
                "name": "mock",
                "base_url": f"{mock_url}/v1",
                "api_key": MOCK_KEY,
                "models": ["mock-gpt"],
                "prices": {"mock-gpt": {"input": 2.5, "output": 10.0}},
            }
        ],
        "aliases": {"assistant": "mock-gpt"},
    }
    big = 10**9
    keys = [
        {
            "name": "bench",
            "key": BENCH_KEY,
            "requests_per_minute": big,
            "tokens_per_minute": big,
            "concurrent_streams": 100_000,
        }
    ]
    return {
        "ENV": "dev",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false",
        "REDIS_URL": redis_url,
        "LLM_PROVIDERS": json.dumps(providers),
        "GATEWAY_API_KEYS": json.dumps(keys),
        # The defaults bound a virtual key and its owner: as generous as the service key's.
        "GATEWAY_REQUESTS_PER_MINUTE": str(big),
        "GATEWAY_TOKENS_PER_MINUTE": str(big),
        "GATEWAY_CONCURRENT_STREAMS": "100000",
    }


def budgeted_key(redis_url: str) -> str:
    """A virtual key with generous limits and a monthly budget, as the api writes it."""
    secret = new_secret()
    record = KeyRecord(
        id=1,
        name="bench",
        owner="user:1",
        user_id=1,
        team_id=None,
        requests_per_minute=10**9,
        tokens_per_minute=10**9,
        concurrent_streams=100_000,
        budgets=(Budget("vkey:1", 10**15, "month"),),
    )
    with redis_sync.Redis.from_url(redis_url) as client:
        client.set(directory_key(secret_digest(secret)), record.to_json())
    return secret


def main(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    python = None if args.skip_litellm else LITELLM.install(ROOT)
    portkey = None if args.skip_portkey else PORTKEY.install(ROOT)
    mock_port, gw_port, lite_port, pk_port, pk_native_port = (free_port() for _ in range(5))
    mock_url = f"http://127.0.0.1:{mock_port}"
    portkey_headers = ["x-portkey-provider: openai", f"x-portkey-custom-host: {mock_url}/v1"]
    rows: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        redis = RunningRedis(work / "redis")
        redis.start()
        stack.callback(redis.stop)
        launches = [
            Launch(
                [sys.executable, "-m", "chorus_mock_openai", "--port", str(mock_port)],
                f"{mock_url}/readyz",
                {},
                work / "mock.log",
            ),
            Launch(
                [sys.executable, "-m", "chorus_gateway"],
                f"http://127.0.0.1:{gw_port}/readyz",
                gateway_env(gw_port, redis.url, mock_url),
                work / "gateway.log",
            ),
        ]
        if python is not None:
            config = litellm_config(work / "litellm.yaml", mock_url)
            launches.append(
                Launch(
                    [
                        str(python.parent / "litellm"),
                        "--config",
                        str(config),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(lite_port),
                        "--num_workers",
                        "1",
                    ],
                    f"http://127.0.0.1:{lite_port}/health/liveliness",
                    {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"},
                    work / "litellm.log",
                    timeout=300.0,  # a large proxy: ~20 s on 2 quiet cores, minutes on busy ones
                )
            )
        if portkey is not None:
            node_env = {"NODE_ENV": "production"}
            for port, preloaded in ((pk_port, False), (pk_native_port, True)):
                launches.append(
                    Launch(
                        portkey_argv(portkey, port, native_response=preloaded),
                        f"http://127.0.0.1:{port}/",
                        node_env,
                        work / ("portkey-native.log" if preloaded else "portkey.log"),
                    )
                )
        started = time.monotonic()
        processes = iter(stack.enter_context(spawn_all(launches)))
        print(f"every process ready in {time.monotonic() - started:.0f} s", flush=True)
        mock, gateway = next(processes), next(processes)
        plan = [
            Target("direct", mock_port, MOCK_KEY, mock),
            Target("gateway", gw_port, BENCH_KEY, gateway),
            Target("gateway-vkey", gw_port, budgeted_key(redis.url), gateway, complete=False),
        ]
        if python is not None:
            plan.append(Target("litellm", lite_port, LITELLM_KEY, next(processes)))
        if portkey is not None:
            shipped, native = next(processes), next(processes)
            plan.append(
                Target("portkey", pk_port, MOCK_KEY, shipped, portkey_headers, streamed=False)
            )
            plan.append(
                Target(
                    "portkey-native",
                    pk_native_port,
                    MOCK_KEY,
                    native,
                    portkey_headers,
                    complete=False,
                )
            )
        print(
            f"TTFT and non-streamed: {args.requests} sequential requests each; throughput: "
            f"{args.streams} concurrent streams for {args.seconds:g}s; {args.runs} runs, "
            f"targets interleaved (2 shared cores: noisy; load average {load_before[0]:.1f})",
            flush=True,
        )
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", flush=True)
            for target in plan:
                # The peers' throughput comes after every run (below); the gateway's and the
                # mock's own, in every run.
                throughput = target.name in ("direct", "gateway")
                row = measure(target, args, throughput=throughput)
                rows.setdefault(target.name, {"runs": []})["runs"].append(row)
                settle(mock, target)
        cancels: dict[str, tuple[list[float], int]] = {}
        for target in plan:
            if target.name not in ("direct", "gateway", "litellm"):
                continue
            # LiteLLM may let a left stream run to its end (10 s each): fewer samples.
            count = args.cancels if target.name != "litellm" else max(1, args.cancels // 10)
            cancels[target.name] = asyncio.run(
                cancel_run(target.port, target.key, mock_url, count, target.name)
            )
            samples, _ = cancels[target.name]
            print(
                f"  {target.name:8s} disconnect → upstream cancel: {len(samples)} of {count} "
                f"cancelled, p50 {_fmt_ms(_nearest_rank(samples, 0.5))} "
                f"p99 {_fmt_ms(_nearest_rank(samples, 0.99))}",
                flush=True,
            )
        # The peers' throughput last, in --peer-throughput-runs of the runs, LiteLLM the very
        # last: a slow peer (LiteLLM: a few hundred chunks/s against the gateway's tens of
        # thousands) keeps reading the streams the load generator cut at its deadline for
        # most of a minute, and nothing measured after it has that to wait out.
        peers = sorted(
            (t for t in plan if t.streamed and t.name not in ("direct", "gateway", "gateway-vkey")),
            key=lambda t: t.name == "litellm",
        )
        runs = min(args.peer_throughput_runs, args.runs)
        for run in range(runs):
            for target in peers:
                row = measure(target, args, throughput=True, sequential=False)
                rows[target.name]["runs"][run] |= row
                if run < runs - 1 or target is not peers[-1]:
                    settle(mock, target)
    load = (load_before[0], os.getloadavg()[0])
    report(rows, cancels, load, args)


# -- the result ----------------------------------------------------------------------------------


def _values(rows: dict[str, dict[str, Any]], name: str, field: str) -> list[float]:
    """``field`` of each of ``name``'s runs that measured it."""
    return [float(r[field]) for r in rows[name]["runs"] if field in r] if name in rows else []


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: list[float]) -> list[float] | None:
    return [min(values), max(values)] if values else None


def _overheads(rows: dict[str, dict[str, Any]], name: str, field: str) -> list[float]:
    """Per run: ``field`` of ``name`` minus the same of direct to the mock in the same run."""
    if name not in rows:
        return []
    direct = _values(rows, "direct", field)
    return [t - d for t, d in zip(_values(rows, name, field), direct, strict=True)]


def _nearest_rank(samples: list[float], q: float) -> float | None:
    """The ``q`` quantile of ``samples`` (nearest rank), None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cancel_rows(cancels: dict[str, tuple[list[float], int]]) -> list[dict[str, Any]]:
    """The disconnect → upstream cancel row: the gateway's p99 against LiteLLM's."""
    if "gateway" not in cancels:
        return []
    gateway, gw_missed = cancels["gateway"]
    lite, lite_missed = cancels.get("litellm", ([], 0))
    direct, _ = cancels.get("direct", ([], 0))
    gw_p99, lite_p99 = _nearest_rank(gateway, 0.99), _nearest_rank(lite, 0.99)
    direct_p99 = _nearest_rank(direct, 0.99)
    note = (
        f"close of a client mid-stream → the mock sees its request end; p99 of "
        f"{len(gateway)} (gateway), {len(lite)} (LiteLLM); direct to the mock "
        f"{direct_p99:.2f} ms"
        if direct_p99 is not None
        else "close of a client mid-stream → the mock sees its request end"
    )
    if gw_missed or lite_missed:
        note += f"; never cancelled: gateway {gw_missed}, LiteLLM {lite_missed}"
    return [
        {
            "figure": "Disconnect → upstream cancel p99 (client leaves mid-stream)",
            "peer": "LiteLLM proxy",
            "peer_value": lite_p99,
            "peer_spread": _spread(lite),
            "chorus": gw_p99,
            "chorus_spread": _spread(gateway),
            "unit": "ms",
            "ratio": _ratio(gw_p99, lite_p99),
            "target": f"<= {CANCEL_TARGET_MS:g} ms, every stream cancelled",
            "met": (gw_p99 <= CANCEL_TARGET_MS and not gw_missed) if gw_p99 is not None else None,
            "note": note,
        }
    ]


def _ratio(chorus: float | None, peer: float | None) -> float | None:
    return chorus / peer if chorus is not None and peer else None


def _row(
    figure: str,
    peer: str,
    peer_values: list[float],
    chorus_values: list[float],
    unit: str,
    target: str,
    met: Any,
    note: str,
    *,
    ratio: bool = True,
) -> dict[str, Any]:
    """One contract row from per-run values; ``met(chorus, ratio)`` decides the verdict."""
    chorus, peer_value = _median(chorus_values), _median(peer_values)
    value_ratio = _ratio(chorus, peer_value) if ratio else None
    measured = chorus is not None and (value_ratio is not None or not ratio)
    verdict = bool(met(chorus, value_ratio)) if measured and met is not None else None
    return {
        "figure": figure,
        "peer": peer,
        "peer_value": peer_value,
        "peer_spread": _spread(peer_values),
        "chorus": chorus,
        "chorus_spread": _spread(chorus_values),
        "unit": unit,
        "ratio": value_ratio,
        "target": target,
        "met": verdict,
        "note": note,
    }


def contract_rows(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the bench result contract (median over runs, [min, max] spread)."""
    ttft_gw = _overheads(rows, "gateway", "ttft_p50_ms")
    # A run whose window saw no chunk at all has no figure (not a zero).
    gw_tput = [v for v in _values(rows, "gateway", "events_per_cpu_s") if v > 0]
    gw_wall = [v for v in _values(rows, "gateway", "events_per_s") if v > 0]
    result = [
        _row(
            "Gateway TTFT overhead p50, sequential streams (vs direct to the mock)",
            "direct to mock (its TTFT p50)",
            _values(rows, "direct", "ttft_p50_ms"),
            ttft_gw,
            "ms",
            f"<= {TTFT_TARGET_MS:g} ms",
            lambda chorus, _: chorus <= TTFT_TARGET_MS,
            "overhead = p50 TTFT through the gateway - p50 TTFT direct, same run; "
            "gateway with limits on (Redis) and usage jobs",
            ratio=False,
        )
    ]
    if "gateway-vkey" in rows:
        ttft_vkey = _overheads(rows, "gateway-vkey", "ttft_p50_ms")
        extra = [v - g for v, g in zip(ttft_vkey, ttft_gw, strict=True)]
        extra_med = _median(extra)
        result.append(
            _row(
                "Gateway TTFT overhead p50 with a budgeted virtual key (vs a service key)",
                "same gateway, service key (its overhead)",
                ttft_gw,
                ttft_vkey,
                "ms",
                f"<= +{VKEY_EXTRA_TARGET_MS:g} ms",
                lambda _c, _r: extra_med is not None and extra_med <= VKEY_EXTRA_TARGET_MS,
                "per run: virtual-key overhead minus service-key overhead, median "
                f"{extra_med if extra_med is not None else float('nan'):+.3f} ms; the "
                "budget is reserved in the admission script, before any upstream call",
                ratio=False,
            )
        )
    streamed_peers = (
        ("litellm", "LiteLLM proxy", "<= 0.333x", 1 / 3),
        ("portkey-native", "Portkey gateway (Node's own Response)", "<= 1x", 1.0),
    )
    for name, label, target, bound in streamed_peers:
        if name not in rows:
            continue
        result.append(
            _row(
                f"Gateway TTFT overhead p50, sequential streams (vs {label}'s overhead)",
                label,
                _overheads(rows, name, "ttft_p50_ms"),
                ttft_gw,
                "ms",
                target,
                lambda _, ratio, bound=bound: ratio <= bound,
                "ratio = gateway overhead / peer overhead (lower is better)",
            )
        )
    for name, label, target, bound in (
        ("litellm", "LiteLLM proxy", f">= {THROUGHPUT_TARGET_RATIO:g}x", THROUGHPUT_TARGET_RATIO),
        ("portkey-native", "Portkey gateway (Node's own Response)", ">= 1x", 1.0),
    ):
        if name not in rows:
            continue
        result.append(
            _row(
                "Gateway streaming throughput, chunks/s per core (200 concurrent streams)",
                label,
                [v for v in _values(rows, name, "events_per_cpu_s") if v > 0],
                gw_tput,
                "chunks/s per core",
                target,
                lambda _, ratio, bound=bound: ratio >= bound,
                "SSE events delivered / CPU seconds of the proxy process (psutil), over "
                "--seconds or, for a proxy that answered fewer events than streams by then, "
                "until it did (at most 5x as long); the peer's in its first run only (each "
                "run leaves it draining the cut streams)",
            )
        )
    if "litellm" in rows:
        result.append(
            _row(
                "Gateway streaming throughput, chunks/s wall (200 concurrent streams)",
                "LiteLLM proxy",
                [v for v in _values(rows, "litellm", "events_per_s") if v > 0],
                gw_wall,
                "chunks/s",
                "info",
                None,
                "bounded by the shared 2 cores (load generator and mock on them too)",
            )
        )
    result += complete_rows(rows)
    return result


def complete_rows(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Non-streamed completions: overhead p50 and p99 over direct, against each peer's."""
    out: list[dict[str, Any]] = []
    quantiles = (("p50", "complete_p50_ms", 1.0), ("p99", "complete_p99_ms", 2.0))
    for quantile, key, bound_ms in quantiles:
        mine = _overheads(rows, "gateway", key)
        out.append(
            _row(
                f"Non-streamed completion overhead {quantile}, sequential (vs direct to the mock)",
                f"direct to mock (its {quantile})",
                _values(rows, "direct", key),
                mine,
                "ms",
                f"<= {bound_ms:g} ms",
                lambda chorus, _, bound_ms=bound_ms: chorus <= bound_ms,
                f"overhead = {quantile} through the gateway - {quantile} direct, same run",
                ratio=False,
            )
        )
        for name, target, bound in (("litellm", "<= 0.333x", 1 / 3), ("portkey", "<= 1x", 1.0)):
            if name not in rows:
                continue
            out.append(
                _row(
                    f"Non-streamed completion overhead {quantile}, sequential "
                    f"(vs {LABELS[name]}'s overhead)",
                    LABELS[name],
                    _overheads(rows, name, key),
                    mine,
                    "ms",
                    target,
                    lambda _, ratio, bound=bound: ratio <= bound,
                    "ratio = gateway overhead / peer overhead (lower is better); "
                    f"{quantile} of each run's sequential requests",
                )
            )
    return out


def distributions(
    rows: dict[str, dict[str, Any]], cancels: dict[str, tuple[list[float], int]]
) -> list[dict[str, Any]]:
    """TTFT, non-streamed latency and cancel latency samples (at most 5,000 each)."""
    out = []
    for title, key in (
        ("Time to first token, sequential streams", "ttft_samples_ms"),
        ("Non-streamed completion latency, sequential requests", "complete_samples_ms"),
    ):
        series: dict[str, list[float]] = {}
        for name, label in LABELS.items():
            samples = [s for r in rows.get(name, {"runs": []})["runs"] for s in r.get(key, [])]
            if samples:
                step = max(1, -(-len(samples) // MAX_SAMPLES))
                series[label] = [round(s, 4) for s in samples[::step]]
        if series:
            out.append({"title": title, "unit": "ms", "series": series})
    cancelled = {
        LABELS[name]: [round(s, 4) for s in samples[:MAX_SAMPLES]]
        for name, (samples, _) in cancels.items()
        if samples
    }
    if cancelled:
        out.append({"title": "Disconnect → upstream cancel", "unit": "ms", "series": cancelled})
    return out


def report(
    rows: dict[str, dict[str, Any]],
    cancels: dict[str, tuple[list[float], int]],
    load: tuple[float, float],
    args: argparse.Namespace,
) -> None:
    table = contract_rows(rows) + cancel_rows(cancels)
    print(f"\nmedian over {args.runs} runs [min, max] (load average {load[0]:.1f} → {load[1]:.1f})")
    for row in table:
        if row["chorus"] is None:
            continue
        ratio = f", ratio {row['ratio']:.3f}" if row["ratio"] is not None else ""
        peer = f"{row['peer_value']:,.3f}" if row["peer_value"] is not None else "—"
        print(
            f"  {row['figure']}: chorus {row['chorus']:,.3f} {_fmt(row['chorus_spread'])} "
            f"{row['unit']}; {row['peer']} {peer} {_fmt(row['peer_spread'])}{ratio} "
            f"(target {row['target']}, met {row['met']})"
        )
    result = {
        "bench": "gateway_llm",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_split": (
            "not pinned: the proxy under test (gateway, LiteLLM or Portkey, 1 process), "
            "its Redis, the mock upstream and the uvloop load generator (own process) share "
            f"the machine's {os.cpu_count()} CPUs with other work (load average "
            f"{load[0]:.1f} before, {load[1]:.1f} after); per-core figures use the proxy's "
            "own CPU time. Portkey: non-streamed as shipped; streamed with Node's own "
            "Request/Response preloaded (as shipped its streaming fails on Node "
            f"{_node_version()} with TypeError: immutable)"
        ),
        "rows": table,
        "distributions": distributions(rows, cancels),
    }
    raw = RESULTS / "gateway_llm.json"
    raw.write_text(
        json.dumps(
            {
                "result": result,
                "runs": _strip(rows),
                "cancels": {n: {"ms": c[0], "never": c[1]} for n, c in cancels.items()},
            },
            indent=2,
        )
    )
    print(f"raw results: {raw.relative_to(ROOT)}")
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2))
        print(f"result: {args.json_out}")


def _node_version() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
        return done.stdout.strip().removeprefix("v")
    return "(unknown)"


def _fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


def _fmt(spread: list[float] | None) -> str:
    return f"[{spread[0]:,.3f}, {spread[1]:,.3f}]" if spread else ""


def _strip(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    samples = {"ttft_samples_ms", "complete_samples_ms"}
    return {
        name: [{k: v for k, v in r.items() if k not in samples} for r in data["runs"]]
        for name, data in rows.items()
    }


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=4.0,
        help="cap on each sequential phase per target (a slow peer gets fewer samples)",
    )
    parser.add_argument("--streams", type=int, default=200, help="concurrent streams")
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput phase length")
    parser.add_argument("--stream-tokens", type=int, default=50, help="tokens per stream")
    parser.add_argument("--runs", type=int, default=3, help="repeats; medians are reported")
    parser.add_argument(
        "--peer-throughput-runs",
        type=int,
        default=1,
        help="runs in which the peers' throughput is measured (the gateway's: every run)",
    )
    parser.add_argument(
        "--cancels", type=int, default=30, help="disconnect → upstream cancel samples per target"
    )
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-portkey", action="store_true")
    parser.add_argument("--json-out", type=Path, help="write the bench result contract here")
    return parser.parse_args()


if __name__ == "__main__":
    main(parse())
