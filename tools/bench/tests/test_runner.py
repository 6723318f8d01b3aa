"""The harness runs real scripts: results, crashes, old CLIs, bad JSON and hangs."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chorus_bench.runner import Script, failure_reason, run_script

FIXTURES = Path(__file__).parent / "fixtures"


def script(tmp_path: Path, body: str) -> Script:
    path = tmp_path / "bench" / "fake.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return Script(
        name="fake",
        path=path,
        json_out=tmp_path / "bench" / "results" / "fake.json",
        log=tmp_path / "bench" / "results" / "raw" / "fake.log",
    )


def test_a_script_that_honours_the_contract_is_measured(tmp_path: Path) -> None:
    source = FIXTURES / "worker_jobs.json"
    target = script(
        tmp_path,
        f"""
        import argparse, shutil
        parser = argparse.ArgumentParser()
        parser.add_argument("--json-out")
        args = parser.parse_args()
        print("measuring ...")
        shutil.copy({str(source)!r}, args.json_out)
        """,
    )
    outcome = run_script(target, python=sys.executable, timeout=60, cwd=tmp_path)
    assert outcome.result is not None
    assert outcome.result.bench == "worker_jobs"
    assert outcome.reason == ""
    assert outcome.log == "bench/results/raw/fake.log"
    log = target.log.read_text()
    assert "--json-out bench/results/fake.json" in log.splitlines()[0]
    assert "measuring ..." in log


def test_a_script_without_json_out_is_not_measured_with_argparse_words(tmp_path: Path) -> None:
    target = script(
        tmp_path,
        """
        import argparse
        argparse.ArgumentParser(prog="fake.py").parse_args()
        """,
    )
    outcome = run_script(target, python=sys.executable, timeout=60, cwd=tmp_path)
    assert outcome.result is None
    assert outcome.reason == (
        "exit code 2: fake.py: error: unrecognized arguments: --json-out bench/results/fake.json"
    )


def test_a_stale_result_from_a_previous_run_is_not_reported(tmp_path: Path) -> None:
    target = script(tmp_path, "raise SystemExit(0)\n")
    target.json_out.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "worker_jobs.json", target.json_out)
    outcome = run_script(target, python=sys.executable, timeout=60, cwd=tmp_path)
    assert outcome.result is None
    assert outcome.reason == "no JSON written to fake.json"


def test_json_outside_the_contract_is_not_measured(tmp_path: Path) -> None:
    target = script(
        tmp_path,
        """
        import sys
        open(sys.argv[2], "w").write('{"bench": "fake", "date": "now", "cpu_split": "", "rows": 3}')
        """,
    )
    outcome = run_script(target, python=sys.executable, timeout=60, cwd=tmp_path)
    assert outcome.reason == "result.rows: expected a list, got int"


def test_a_crash_reports_its_last_words(tmp_path: Path) -> None:
    target = script(tmp_path, "raise RuntimeError('redis did not start')\n")
    outcome = run_script(target, python=sys.executable, timeout=60, cwd=tmp_path)
    assert outcome.reason == "exit code 1: RuntimeError: redis did not start"


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is gone for our purposes once it no longer runs.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.slow
def test_a_hang_times_out_and_takes_its_servers_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    target = script(
        tmp_path,
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("serving", flush=True)
        time.sleep(600)
        """,
    )
    start = time.monotonic()
    outcome = run_script(target, python=sys.executable, timeout=3, cwd=tmp_path)
    assert outcome.result is None
    assert outcome.reason == "timed out after 3 s"
    assert time.monotonic() - start < 30
    assert "serving" in target.log.read_text()
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not pid_gone(child):
        assert time.monotonic() < deadline, f"the script's child {child} outlived the timeout"
        time.sleep(0.05)


def test_failure_reasons_name_signals_and_skip_blank_lines() -> None:
    assert failure_reason(-9, ["started", ""]) == "killed by SIGKILL: started"
    assert failure_reason(3, []) == "exit code 3"
