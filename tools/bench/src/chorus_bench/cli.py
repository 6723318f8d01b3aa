"""``make bench``: run every bench script, then write ``bench/results/latest.md`` and the plots.

The harness records; it never fails the build. A script that crashes, times out, does not
know ``--json-out`` yet or writes JSON outside the contract becomes a "not measured" row,
and the exit status is 0 whatever the figures say.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from chorus_bench.contract import ContractError, load_result
from chorus_bench.peers import PEERS, Peer, PeerInstallError
from chorus_bench.plots import plot_distribution
from chorus_bench.report import Machine, Outcome, Step, render
from chorus_bench.runner import Script, run_script

#: Every bench, in the order they run, with how long each may take (seconds) before it is
#: stopped: about three times its default run on 2 quiet cores, so a loaded machine still
#: measures it, and a hung script cannot hold the whole run.
BENCHES = {
    "realtime_fanout": 420.0,
    "realtime_rooms": 480.0,
    "realtime_cluster": 300.0,
    "realtime_storm": 420.0,
    "gateway_llm": 600.0,
    "api_users": 360.0,
    "api_dashboard": 360.0,
    "worker_jobs": 360.0,
    "tracing": 480.0,
}


#: Set by ``make bench`` to the Unix time it started, so the bootstrap before this script
#: (the workspace venv, wrk and Node from apt) is counted in the run's wall time.
MAKE_STARTED = "BENCH_MAKE_STARTED"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in {"model name", "Model", "Hardware"}:
                return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def git_commit(root: Path) -> str:
    """Short commit id, with ``+ local changes`` when the tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changes = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit} + local changes" if changes else commit


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def plot_all(outcome: Outcome, results: Path) -> Outcome:
    """Plot every distribution of a measured bench; a failed plot is named, not fatal."""
    for stale in results.glob(f"{outcome.name}-*.png"):  # an earlier run's plots
        stale.unlink()
    if outcome.result is None:
        return outcome
    plots: list[str] = []
    for n, distribution in enumerate(outcome.result.distributions, start=1):
        path = results / f"{outcome.name}-{n}.png"
        try:
            plot_distribution(distribution, path)
        except Exception as exc:
            print(f"bench: plot {path.name} failed: {exc!r}", file=sys.stderr)
            continue
        plots.append(path.name)
    return Outcome(
        name=outcome.name,
        seconds=outcome.seconds,
        result=outcome.result,
        reason=outcome.reason,
        plots=plots,
        log=outcome.log,
    )


def reuse(name: str, results: Path) -> Outcome:
    """The JSON a previous run left (``--render-only``)."""
    try:
        return Outcome(name=name, seconds=None, result=load_result(results / f"{name}.json"))
    except ContractError as exc:
        return Outcome(name=name, seconds=None, reason=str(exc))


def make_bootstrap(now: float) -> Step | None:
    """The seconds ``make bench`` spent before this script started, when it said when."""
    try:
        started = float(os.environ.get(MAKE_STARTED, ""))
    except ValueError:
        return None
    return Step("make: workspace venv, wrk and Node", max(0.0, now - started))


def _timed_install(peer: Peer, root: Path) -> tuple[float, str]:
    start = time.monotonic()
    try:
        peer.install(root)
    except PeerInstallError as exc:  # the bench that needs it says so again, as its row
        print(f"bench: installing {peer.name} failed: {exc}", file=sys.stderr, flush=True)
        return time.monotonic() - start, "failed"
    return time.monotonic() - start, ""


def install_peers(peers: Sequence[Peer], names: Sequence[str], root: Path) -> Step | None:
    """Install the peers these benches need side by side (downloads and compiles overlap).

    A fresh clone has none; a later run finds each in ``bench/.venvs`` and takes no time.
    """
    wanted = [peer for peer in peers if set(peer.benches) & set(names)]
    if not wanted:
        return None
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        timings = list(pool.map(lambda peer: _timed_install(peer, root), wanted))
    each = ", ".join(
        f"{peer.name} {seconds:.0f} s" + (f" {failed}" if failed else "")
        for peer, (seconds, failed) in zip(wanted, timings, strict=True)
    )
    return Step("peers, installed side by side", time.monotonic() - start, each)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this bench (repeat, or comma-separate); one of {', '.join(BENCHES)}",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds each script may run before it is stopped (default: its own, "
        + ", ".join(f"{name} {seconds:g}" for name, seconds in BENCHES.items())
        + ")",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: render latest.md and the plots from the JSON files already there",
    )
    return parser.parse_args(argv)


def selected(only: Sequence[str] | None) -> list[str]:
    if not only:
        return list(BENCHES)
    names = [n.strip().removesuffix(".py") for arg in only for n in arg.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        raise SystemExit(f"bench: unknown bench {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    return [name for name in BENCHES if name in names]


def main(
    argv: Sequence[str] | None = None, *, root: Path | None = None, peers: Sequence[Peer] = PEERS
) -> int:
    args = parse_args(argv)
    started, wall_started = time.monotonic(), time.time()
    make = make_bootstrap(wall_started)
    steps = [make] if make else []
    names = selected(args.only)
    root = root or Path.cwd()
    bench_dir = root / "bench"
    results = bench_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    date = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    commit = git_commit(root)
    load_before = load_average()

    if not args.render_only:
        installed = install_peers(peers, names, root)
        steps += [installed] if installed else []
    outcomes: list[Outcome] = []
    plotting = 0.0
    for name in names:
        if args.render_only:
            outcome = reuse(name, results)
        else:
            timeout = args.timeout or BENCHES[name]
            print(f"bench: running {name} (timeout {timeout:g} s) ...", flush=True)
            outcome = run_script(
                Script(
                    name=name,
                    path=bench_dir / f"{name}.py",
                    json_out=results / f"{name}.json",
                    log=results / "raw" / f"{name}.log",
                ),
                python=sys.executable,
                timeout=timeout,
                cwd=root,
            )
            status = "measured" if outcome.result else f"not measured: {outcome.reason}"
            print(f"bench: {name} {status} ({outcome.seconds or 0:.0f} s)", flush=True)
            steps.append(
                Step(name, outcome.seconds or 0.0, "" if outcome.result else "not measured")
            )
        plot_start = time.monotonic()
        outcomes.append(plot_all(outcome, results))
        plotting += time.monotonic() - plot_start

    machine = Machine(
        date=date,
        commit=commit,
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 0,
        load_before=load_before,
        load_after=load_average(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
    )
    steps.append(Step("plots", plotting))
    total = time.monotonic() - started + (make.seconds if make else 0.0)
    report = render(
        machine,
        outcomes,
        rerendered=args.render_only,
        steps=[] if args.render_only else steps,
        total=total,
    )
    latest = results / "latest.md"
    latest.write_text(report, encoding="utf-8")
    print()
    print(report, end="")
    print(f"\nbench: wrote {latest.relative_to(root) if latest.is_relative_to(root) else latest}")
    return 0
