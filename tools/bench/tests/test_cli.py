"""`bench/run.py` end to end on a scratch checkout: scripts run, latest.md and PNGs appear."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chorus_bench.cli import BENCHES, main, selected

FIXTURES = Path(__file__).parent / "fixtures"


def checkout(tmp_path: Path) -> Path:
    """bench/worker_jobs.py honours the contract; bench/api_users.py predates it."""
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "worker_jobs.py").write_text(
        textwrap.dedent(
            f"""
            import shutil, sys
            assert sys.argv[1] == "--json-out"
            shutil.copy({str(FIXTURES / "worker_jobs.json")!r}, sys.argv[2])
            """
        )
    )
    (bench / "api_users.py").write_text(
        "import argparse\nargparse.ArgumentParser(prog='api_users.py').parse_args()\n"
    )
    return tmp_path


def test_only_runs_the_named_benches_and_writes_report_and_plots(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    assert main(["--only", "worker_jobs,api_users", "--timeout", "60"], root=root) == 0
    results = root / "bench" / "results"
    latest = (results / "latest.md").read_text()
    assert "| worker_jobs | No-op jobs/s, one worker process |" in latest
    assert (
        "| api_users | not measured: exit code 2: api_users.py: error: unrecognized arguments:"
        in latest
    )
    assert "realtime_fanout" not in latest
    # Runs in the harness' order, not the command line's.
    assert latest.index("### api_users") < latest.index("### worker_jobs")
    assert (results / "worker_jobs-1.png").read_bytes()[:4] == b"\x89PNG"
    assert "](worker_jobs-1.png)" in latest
    assert (results / "raw" / "api_users.log").exists()


def test_a_missing_script_is_a_row_not_a_crash(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    assert main(["--only", "gateway_llm", "--timeout", "60"], root=root) == 0
    latest = (root / "bench" / "results" / "latest.md").read_text()
    assert "| gateway_llm | not measured: exit code 2:" in latest
    assert "can't open file" in latest


def test_render_only_reuses_the_json_already_there(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    main(["--only", "worker_jobs"], root=root)
    (root / "bench" / "worker_jobs.py").write_text("raise SystemExit('must not run')\n")
    assert main(["--only", "worker_jobs", "--render-only"], root=root) == 0
    latest = (root / "bench" / "results" / "latest.md").read_text()
    assert "| worker_jobs | No-op jobs/s, one worker process |" in latest
    assert "**Re-rendered**" in latest
    assert (root / "bench" / "results" / "worker_jobs-1.png").exists()


def test_plots_of_an_earlier_run_do_not_survive(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    results = root / "bench" / "results"
    results.mkdir()
    for stale in ("worker_jobs-2.png", "api_users-1.png"):
        (results / stale).write_bytes(b"old")
    main(["--only", "worker_jobs,api_users"], root=root)
    assert sorted(p.name for p in results.glob("*.png")) == ["worker_jobs-1.png"]


def test_bench_names_are_checked() -> None:
    assert selected(None) == list(BENCHES)
    assert selected(["worker_jobs.py", "api_users"]) == ["api_users", "worker_jobs"]
    with pytest.raises(SystemExit, match="unknown bench nope"):
        selected(["nope"])
