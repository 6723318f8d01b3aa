"""Run one bench script as a subprocess, with a deadline, and turn what it left into an Outcome.

The script runs in its own session (process group) so that a timeout stops it together with
every server and load generator it started. Its output goes to the console as it comes and
to a log file; the last lines explain a failure in the report.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from chorus_bench.contract import ContractError, load_result
from chorus_bench.report import Outcome

TAIL_LINES = 20
GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Script:
    """A bench script and where its JSON goes."""

    name: str
    path: Path
    json_out: Path
    log: Path


def _pump(stream: IO[str], log: IO[str], tail: collections.deque[str], prefix: str) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        tail.append(line.rstrip("\n"))
        print(f"{prefix}{line}", end="", flush=True)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the script's whole process group, SIGKILL if it is still there after a grace."""
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, GRACE_SECONDS)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure nothing it started lingers in its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return


def _shown(path: Path, cwd: Path) -> str:
    """A path relative to the working directory when it is under it (shorter messages)."""
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


def failure_reason(returncode: int, tail: Sequence[str]) -> str:
    """``exit code 2: bench/x.py: error: unrecognized arguments: --json-out ...``."""
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}" + (f": {last}" if last else "")
    return f"exit code {returncode}" + (f": {last}" if last else "")


def run_script(
    script: Script, *, python: str, timeout: float, cwd: Path, extra_args: Sequence[str] = ()
) -> Outcome:
    """Run ``python <script> --json-out <json>``; every failure becomes a not-measured Outcome."""
    script.json_out.unlink(missing_ok=True)  # never report a previous run's figures as this one's
    script.json_out.parent.mkdir(parents=True, exist_ok=True)
    script.log.parent.mkdir(parents=True, exist_ok=True)
    argv = [python, _shown(script.path, cwd), "--json-out", _shown(script.json_out, cwd)]
    argv += extra_args
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    log_name = _shown(script.log, cwd)
    start = time.monotonic()
    with script.log.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n")
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        assert process.stdout is not None
        pump = threading.Thread(
            target=_pump, args=(process.stdout, log, tail, f"[{script.name}] "), daemon=True
        )
        pump.start()
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if timed_out or process.poll() is None:
                _stop(process)
            else:
                # Whatever the script left running in its group would hold our pipe open.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            pump.join(timeout=GRACE_SECONDS)
            if not pump.is_alive():
                process.stdout.close()
    seconds = time.monotonic() - start

    def not_measured(reason: str) -> Outcome:
        return Outcome(name=script.name, seconds=seconds, reason=reason, log=log_name)

    if timed_out:
        return not_measured(f"timed out after {timeout:.0f} s")
    if process.returncode != 0:
        return not_measured(failure_reason(process.returncode, list(tail)))
    try:
        result = load_result(script.json_out)
    except ContractError as exc:
        return not_measured(str(exc))
    return Outcome(name=script.name, seconds=seconds, result=result, log=log_name)
