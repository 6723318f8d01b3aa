"""LLM gateway benchmark: direct-to-mock vs the Chorus gateway vs the LiteLLM proxy.

    .venv/bin/python bench/gateway_llm.py [--requests 300] [--streams 200] [--seconds 8]

One run starts the mock OpenAI upstream, Redis, the Chorus gateway (``python -m
chorus_gateway``, limits on) and the LiteLLM proxy (``litellm[proxy]`` from PyPI,
installed by this script into ``bench/.venvs/litellm`` with ``uv``, never into the
workspace lock), all pointed at the same mock, and measures through each:

- **TTFT**: time from sending a streamed request to its first ``data: {`` event,
  sequential, one keep-alive connection, p50 and p90 over ``--requests`` requests
  (mock TTFT 0, 16 tokens). Overhead = p50(target) - p50(direct).
- **Throughput**: ``--streams`` concurrent keep-alive connections streaming back to back
  for ``--seconds`` (mock 200 tokens per stream, no delays): SSE events/s delivered, and
  events/s per core of the target's own process (its CPU time from psutil).

The load generator is a raw asyncio HTTP/1.1 client on uvloop in its own process (a
few bytes of parsing per read), so it costs the system under test as little as it can.
The machine has 2 cores shared with other work: numbers are noisy; compare ratios
measured in the same run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / ".venvs"
RESULTS = ROOT / "bench" / "results" / "raw"
BENCH_KEY = "bench-key-0123456789"
LITELLM_KEY = "sk-bench-master-key"
TARGETS = ("direct", "gateway", "litellm")
TTFT_TARGET_MS = 1.0
THROUGHPUT_TARGET_RATIO = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@contextlib.contextmanager
def spawn(
    argv: list[str], ready_url: str, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            wait_ready(ready_url, process)
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def litellm_python() -> Path:
    """The LiteLLM proxy's own venv (created on first use)."""
    venv = VENVS / "litellm"
    python = venv / "bin" / "python"
    VENVS.mkdir(parents=True, exist_ok=True)
    (VENVS / ".gitignore").write_text("*\n")
    if not (venv / "bin" / "litellm").exists():
        uv = shutil.which("uv") or "uv"
        print("installing litellm[proxy] into bench/.venvs/litellm (first run only)…")
        subprocess.run([uv, "venv", str(venv), "-p", "3.11", "-q"], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(python), "litellm[proxy]"], check=True
        )
    return python


def litellm_config(path: Path, mock_url: str) -> Path:
    path.write_text(
        "model_list:\n"
        "  - model_name: mock-gpt\n"
        "    litellm_params:\n"
        "      model: openai/mock-gpt\n"
        f"      api_base: {mock_url}/v1\n"
        "      api_key: sk-mock\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "  disable_spend_logs: true\n"
    )
    return path


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


# -- load generator (runs in its own process) ----------------------------------------------------


def request_bytes(port: int, key: str, tokens: int) -> bytes:
    body = json.dumps(
        {
            "model": "mock-gpt",
            "messages": [{"role": "user", "content": f"bench [mock tokens={tokens}]"}],
            "stream": True,
        }
    ).encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def one_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[float, int]:
    """Send one request on a kept-alive connection; (seconds to first event, events)."""
    start = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:200].decode(errors="replace"))
    first = 0.0
    events = 0
    carry = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            break
        data = carry + (await reader.readexactly(size + 2))[:-2]
        found = data.count(b"data: {")
        if found and not first:
            first = time.perf_counter() - start
        events += found
        carry = data[-6:]
    return first, events


async def ttft_run(port: int, key: str, count: int, warmup: int) -> list[float]:
    connection = Connection(port)
    request = request_bytes(port, key, 16)
    samples = []
    for i in range(warmup + count):
        first, _ = await connection.stream(request)
        if i >= warmup:
            samples.append(first)
    connection.close()
    return samples


class Connection:
    """A kept-alive connection that reconnects when the server closed it while idle."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def stream(self, request: bytes) -> tuple[float, int]:
        for attempt in (1, 2):
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            try:
                return await one_stream(self.reader, self.writer, request)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.writer.close()
                self.writer = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def throughput_run(port: int, key: str, streams: int, seconds: float) -> dict[str, Any]:
    request = request_bytes(port, key, 200)
    connections = [Connection(port) for _ in range(streams)]
    await asyncio.gather(*(c.stream(request) for c in connections))  # connect and warm up
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    deadline = time.perf_counter() + seconds
    totals = {"events": 0, "streams": 0}

    async def worker(connection: Connection) -> None:
        while time.perf_counter() < deadline:
            _, events = await connection.stream(request)
            totals["events"] += events
            totals["streams"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return {**totals, "seconds": elapsed}


def loadgen_main(args: argparse.Namespace) -> None:
    import uvloop  # noqa: PLC0415 - only the load generator needs it

    if args.mode == "ttft":
        result: Any = uvloop.run(ttft_run(args.port, args.key, args.requests, args.warmup))
    else:
        result = uvloop.run(throughput_run(args.port, args.key, args.streams, args.seconds))
    print(json.dumps(result), flush=True)


def run_loadgen(
    mode: str, port: int, key: str, args: argparse.Namespace, target: psutil.Process
) -> tuple[Any, float, float]:
    """Run the load generator; returns (result, target CPU seconds, loadgen CPU seconds)."""
    argv = [
        sys.executable,
        __file__,
        "--loadgen",
        mode,
        "--port",
        str(port),
        "--key",
        key,
        "--requests",
        str(args.requests),
        "--warmup",
        str(args.warmup),
        "--streams",
        str(args.streams),
        "--seconds",
        str(args.seconds),
    ]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None
    assert child.stdout is not None
    before = cpu_seconds(target)
    if mode == "throughput":
        line = child.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"load generator: {line}")
        before = cpu_seconds(target)
        gen_before = cpu_seconds(psutil.Process(child.pid))
        child.stdin.write("go\n")
        child.stdin.flush()
    else:
        gen_before = 0.0
    out = child.stdout.readline()
    gen_cpu = cpu_seconds(psutil.Process(child.pid)) - gen_before
    used = cpu_seconds(target) - before
    child.wait()
    return json.loads(out), used, gen_cpu


# -- the run -------------------------------------------------------------------------------------


def measure(
    name: str, port: int, key: str, process: psutil.Process, args: argparse.Namespace
) -> dict[str, Any]:
    samples, _, _ = run_loadgen("ttft", port, key, args, process)
    result, cpu, gen_cpu = run_loadgen("throughput", port, key, args, process)
    rate = result["events"] / result["seconds"]
    row = {
        "target": name,
        "ttft_p50_ms": statistics.median(samples) * 1000,
        "ttft_p90_ms": statistics.quantiles(samples, n=10)[-1] * 1000,
        "events_per_s": rate,
        "cpu_s": cpu,
        "events_per_cpu_s": result["events"] / cpu if cpu > 0 else float("nan"),
        "streams_done": result["streams"],
        "loadgen_cpu_s": gen_cpu,
        "seconds": result["seconds"],
    }
    print(
        f"  {name:8s} ttft p50 {row['ttft_p50_ms']:.3f} ms p90 {row['ttft_p90_ms']:.3f} ms | "
        f"{rate:,.0f} events/s, {row['events_per_cpu_s']:,.0f} events/s per core "
        f"(target cpu {cpu:.1f}s, loadgen cpu {gen_cpu:.1f}s)",
        flush=True,
    )
    return row


def main(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    with_litellm = not args.skip_litellm
    python = litellm_python() if with_litellm else None
    mock_port, redis_port, gw_port, lite_port = (free_port() for _ in range(4))
    mock_url = f"http://127.0.0.1:{mock_port}"
    redis_bin = shutil.which("redis-server") or "redis-server"
    providers = {
        "providers": [
            {
                "name": "mock",
                "base_url": f"{mock_url}/v1",
                "api_key": "sk-mock",
                "models": ["mock-gpt"],
            }
        ],
        "aliases": {"assistant": "mock-gpt"},
    }
    big = 10**9
    keys = json.dumps(
        [
            {
                "name": "bench",
                "key": BENCH_KEY,
                "requests_per_minute": big,
                "tokens_per_minute": big,
                "concurrent_streams": 100_000,
            }
        ]
    )
    gateway_env = {
        "ENV": "dev",
        "HOST": "127.0.0.1",
        "PORT": str(gw_port),
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "LLM_PROVIDERS": json.dumps(providers),
        "GATEWAY_API_KEYS": keys,
    }
    rows: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        redis = subprocess.Popen(
            [redis_bin, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(lambda: (redis.terminate(), redis.wait()))
        mock = stack.enter_context(
            spawn(
                [sys.executable, "-m", "chorus_mock_openai", "--port", str(mock_port)],
                f"{mock_url}/readyz",
                {},
                work / "mock.log",
            )
        )
        gateway = stack.enter_context(
            spawn(
                [sys.executable, "-m", "chorus_gateway"],
                f"http://127.0.0.1:{gw_port}/readyz",
                gateway_env,
                work / "gateway.log",
            )
        )
        litellm = None
        if python is not None:
            config = litellm_config(work / "litellm.yaml", mock_url)
            litellm = stack.enter_context(
                spawn(
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
                )
            )
        print(
            f"TTFT: {args.requests} sequential streams; throughput: {args.streams} "
            f"concurrent streams for {args.seconds:g}s (2 shared cores: noisy)"
        )
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}")
            plan = [("direct", mock_port, "sk", mock), ("gateway", gw_port, BENCH_KEY, gateway)]
            if litellm is not None:
                plan.append(("litellm", lite_port, LITELLM_KEY, litellm))
            for name, port, key, proc in plan:
                row = measure(name, port, key, psutil.Process(proc.pid), args)
                rows.setdefault(name, {"runs": []})["runs"].append(row)
    report(rows)


def report(rows: dict[str, dict[str, Any]]) -> None:
    def med(name: str, field: str) -> float:
        return statistics.median(r[field] for r in rows[name]["runs"])

    print("\nmedian over runs")
    direct = med("direct", "ttft_p50_ms")
    gw_over = med("gateway", "ttft_p50_ms") - direct
    print(
        f"  TTFT p50: direct {direct:.3f} ms, gateway {med('gateway', 'ttft_p50_ms'):.3f} ms "
        f"(overhead {gw_over:.3f} ms; target <= {TTFT_TARGET_MS} ms)"
    )
    summary: dict[str, Any] = {
        "ttft_overhead_ms": {"gateway": gw_over},
        "events_per_cpu_s": {n: med(n, "events_per_cpu_s") for n in rows},
        "events_per_s": {n: med(n, "events_per_s") for n in rows},
    }
    if "litellm" in rows:
        lite_over = med("litellm", "ttft_p50_ms") - direct
        summary["ttft_overhead_ms"]["litellm"] = lite_over
        ratio = gw_over / lite_over if lite_over > 0 else float("nan")
        print(
            f"  LiteLLM TTFT p50 {med('litellm', 'ttft_p50_ms'):.3f} ms (overhead "
            f"{lite_over:.3f} ms); gateway/LiteLLM overhead = {ratio:.3f} (target <= 0.333)"
        )
        tput = med("gateway", "events_per_cpu_s") / med("litellm", "events_per_cpu_s")
        summary["throughput_ratio_per_core"] = tput
        print(
            f"  events/s per core: gateway {med('gateway', 'events_per_cpu_s'):,.0f}, LiteLLM "
            f"{med('litellm', 'events_per_cpu_s'):,.0f} → {tput:.1f}x (target >= "
            f"{THROUGHPUT_TARGET_RATIO:g}x); direct mock {med('direct', 'events_per_cpu_s'):,.0f}"
        )
        print(
            f"  events/s wall: direct {med('direct', 'events_per_s'):,.0f}, gateway "
            f"{med('gateway', 'events_per_s'):,.0f}, LiteLLM {med('litellm', 'events_per_s'):,.0f}"
        )
    out = RESULTS / "gateway_llm.json"
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    print(f"raw results: {out.relative_to(ROOT)}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--loadgen", choices=["ttft", "throughput"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.loadgen:
        arguments.mode = arguments.loadgen
        loadgen_main(arguments)
    else:
        main(arguments)
