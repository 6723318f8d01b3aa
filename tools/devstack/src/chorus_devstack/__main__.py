"""``python -m chorus_devstack up|down|status|traces``: what ``make up``, ``make down`` and
``make traces`` run."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from chorus_devstack.ports import port_is_free
from chorus_devstack.process import LogFollower, ProcessDiedError, pid_alive
from chorus_devstack.redis_sentinel import MASTER_NAME
from chorus_devstack.stack import REDIS_MODES, Ports, Stack, StackOptions
from chorus_devstack.trace_view import render_list, render_tree

STATE_DIR = Path(".devstack")


def _banner(stack: Stack) -> str:
    ports = stack.options.ports
    rows = []
    if stack.with_nginx:
        paths = "the web client; /api/docs, /ws/{room}, /events, /v1"
        rows.append(("ingress", f"{stack.url('ingress')}/   ({paths})"))
    else:
        rows.append(("ingress", "nginx not installed: use the service URLs below"))
    rows += [
        ("api", f"{stack.url('api')}/api/docs"),
        ("realtime", "  ".join(stack.url(n) for n in stack.replicas("realtime"))),
        (
            "llm-gateway",
            "  ".join(f"{stack.url(n)}/v1/models" for n in stack.replicas("llm-gateway")),
        ),
        ("worker", f"{stack.url('worker')}/metrics"),
    ]
    if "mock-openai" in stack.processes:
        rows.append(("mock-openai", f"{stack.url('mock-openai')}/v1/models"))
    rows += [
        ("mail", f"smtp://127.0.0.1:{ports.smtp}   inbox {stack.url('smtp-sink')}/messages"),
        ("postgres", stack.database_url.replace("+asyncpg", "")),
        *_redis_rows(stack),
    ]
    if stack.options.tracing:
        spans = stack.state_dir / "spans.jsonl"
        receiver = stack.url("otlp-receiver")
        rows.append(("traces", f"OTLP {receiver}   `make traces`, {receiver}/traces, {spans}"))
    lines = ["", "Chorus is up.", *(f"  {name:<12} {url}" for name, url in rows)]
    lines += [f"  logs         {stack.log_dir}/", "  stop         Ctrl-C, or `make down`", ""]
    return "\n".join(lines)


def _redis_rows(stack: Stack) -> list[tuple[str, str]]:
    if stack.sentinel is not None:
        return [
            ("redis", f"sentinel {stack.sentinel.sentinels} (master {MASTER_NAME})"),
            (
                "",
                f"primary 127.0.0.1:{stack.sentinel.primary_port}  "
                f"replica 127.0.0.1:{stack.sentinel.replica_port}",
            ),
        ]
    rows = [("redis", stack.redis_url)]
    if stack.cluster is not None:
        rows.append(("redis-cluster", stack.cluster.seeds.replace(",", " ")))
    return rows


def _check_ports(ports: Ports, options: StackOptions) -> None:
    wanted = {
        "ingress": ports.ingress,
        "api": ports.api,
        "worker": ports.worker,
        "smtp": ports.smtp,
        "smtp-http": ports.smtp_http,
    }
    wanted.update({f"realtime-{i + 1}": p for i, p in enumerate(ports.realtime)})
    if not options.database_url:
        wanted["postgres"] = ports.postgres
    if not options.redis_url:
        wanted["redis"] = ports.redis
        if options.redis_mode == "sentinel":
            wanted["redis-replica"] = ports.redis_replica
            wanted.update({f"sentinel-{i + 1}": p for i, p in enumerate(ports.sentinels)})
    if options.redis_mode == "cluster":
        for i, (port, bus) in enumerate(zip(ports.cluster, ports.cluster_bus, strict=True)):
            wanted[f"redis-cluster-{i + 1}"] = port
            wanted[f"redis-cluster-{i + 1} bus"] = bus
    if options.tracing:
        wanted["otlp-receiver"] = ports.otlp
    busy = [f"{name} ({port})" for name, port in wanted.items() if not port_is_free(port)]
    if busy:
        sys.exit(f"ports in use: {', '.join(busy)} — is a stack already up? (`make down`)")


def up(args: argparse.Namespace) -> None:
    """Start the system in the foreground until Ctrl-C / SIGTERM."""
    options = StackOptions(
        state_dir=STATE_DIR,
        database_url=os.environ.get("DATABASE_URL") or None,
        redis_url=os.environ.get("REDIS_URL") or None,
        redis_mode=args.redis_mode,
        llm_providers=os.environ.get("LLM_PROVIDERS") or None,
        gateway_replicas=args.gateway_replicas,
        jwt_secret=os.environ.get("JWT_SECRET") or StackOptions(STATE_DIR).jwt_secret,
        fast_storage=False,
        tracing=args.tracing,
        tracing_sampler="parentbased_traceidratio"
        if args.tracing_ratio < 1
        else "parentbased_always_on",
        tracing_ratio=args.tracing_ratio if args.tracing_ratio < 1 else None,
    )
    _check_ports(options.ports, options)
    stack = Stack(options)
    follower = LogFollower()
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("Starting Chorus (first run installs and initialises; logs in .devstack/logs)…")
    try:
        stack.start()
        for name, process in stack.processes.items():
            follower.follow(name, process.log_path)
        print(_banner(stack), flush=True)
        reported: set[str] = set()
        while True:
            for process in stack.died():
                if process.name not in reported:
                    reported.add(process.name)
                    print(
                        f"\n!!! {process.name} exited with {process.returncode()}:\n"
                        f"{process.tail(30)}\n",
                        file=sys.stderr,
                        flush=True,
                    )
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping Chorus…", flush=True)
    except ProcessDiedError as exc:
        print(f"\nChorus failed to start: {exc}", file=sys.stderr)
        follower.close()
        stack.stop()
        sys.exit(1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        follower.close()
        stack.stop()
    print("Stopped.")


def down(args: argparse.Namespace) -> None:
    """Stop a stack started by ``up`` in another terminal."""
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        print("No Chorus stack is running here.")
        return
    state = json.loads(state_file.read_text())
    owner = int(state["pid"])
    if pid_alive(owner):
        os.kill(owner, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while pid_alive(owner) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever the owner could not stop (it was SIGKILLed, say) goes now.
    for pid in state["children"].values():
        if pid_alive(int(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGKILL)
    state_file.unlink(missing_ok=True)
    print("Stopped.")


def status(args: argparse.Namespace) -> None:
    """Print which recorded processes are alive."""
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        print("No Chorus stack is running here.")
        return
    state = json.loads(state_file.read_text())
    for name, pid in {"devstack": state["pid"], **state["children"]}.items():
        print(f"{name:<14} {pid:>7}  {'running' if pid_alive(int(pid)) else 'gone'}")


def traces(args: argparse.Namespace) -> None:
    """List the traces the running stack's receiver holds, or draw one."""
    base = f"http://127.0.0.1:{args.port}"
    try:
        if args.trace_id:
            found = httpx.get(f"{base}/spans", params={"trace_id": args.trace_id}, timeout=10)
            print(render_tree(found.json()["items"]))
            return
        params = {"limit": str(args.limit), "slowest": str(args.slowest).lower()}
        print(render_list(httpx.get(f"{base}/traces", params=params, timeout=10).json()["items"]))
    except httpx.TransportError:
        sys.exit(f"no trace receiver on {base}: start the stack with `make up TRACING=1`")


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m chorus_devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="run the whole system in the foreground")
    up_parser.add_argument("--gateway-replicas", type=int, default=1)
    up_parser.add_argument(
        "--redis-mode",
        choices=REDIS_MODES,
        default="standalone",
        help="one Redis; a Sentinel group; or a Redis Cluster for the channels",
    )
    up_parser.add_argument(
        "--tracing", action="store_true", help="every service exports spans to a local receiver"
    )
    up_parser.add_argument(
        "--tracing-ratio", type=float, default=1.0, help="share of traces sampled (default all)"
    )
    up_parser.set_defaults(func=up)
    traces_parser = sub.add_parser("traces", help="list the traces of `up --tracing`, or draw one")
    traces_parser.add_argument("trace_id", nargs="?", help="draw this trace as a tree")
    traces_parser.add_argument("--slowest", action="store_true", help="slowest first")
    traces_parser.add_argument("--limit", type=int, default=20)
    traces_parser.add_argument("--port", type=int, default=Ports().otlp)
    traces_parser.set_defaults(func=traces)
    sub.add_parser("down", help="stop a running stack").set_defaults(func=down)
    sub.add_parser("status", help="show the stack's processes").set_defaults(func=status)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
