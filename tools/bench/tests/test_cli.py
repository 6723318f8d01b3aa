"""`bench/run.py` end to end on a scratch checkout: scripts run, latest.md and PNGs appear."""

from __future__ import annotations

import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from chorus_bench.cli import BENCHES, MAKE_STARTED, main, selected
from chorus_bench.peers import Peer

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
    assert main(["--only", "gateway_llm", "--timeout", "60"], root=root, peers=()) == 0
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


@dataclass(frozen=True, kw_only=True)
class MeetingPeer(Peer):
    """A peer whose install waits until every other one is installing too (or fails)."""

    meeting: threading.Barrier
    installed: list[str]

    def install(self, root: Path) -> Path:
        self.meeting.wait()
        self.installed.append(self.name)
        return root


def test_the_peers_a_run_needs_install_side_by_side_and_the_budget_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = checkout(tmp_path)
    monkeypatch.setenv(MAKE_STARTED, "0")  # make "started" long ago: its share is counted
    meeting, installed = threading.Barrier(2, timeout=30), list[str]()
    peers = [
        MeetingPeer(name, ("pkg",), (bench,), meeting=meeting, installed=installed)
        for name, bench in (("a", "worker_jobs"), ("b", "worker_jobs"), ("c", "tracing"))
    ]
    assert main(["--only", "worker_jobs"], root=root, peers=peers) == 0
    assert sorted(installed) == ["a", "b"]  # both at once (one at a time breaks the barrier)
    latest = (root / "bench" / "results" / "latest.md").read_text()
    budget = latest[latest.index("## Wall time") : latest.index("## Per bench")]
    assert "| make: workspace venv, wrk and Node |" in budget
    assert "| peers, installed side by side (a 0 s, b 0 s) | 0 |" in budget
    assert "| worker_jobs |" in budget
    assert "| plots |" in budget
    assert "**Total**" in budget


def test_a_peer_that_fails_to_install_is_named_and_the_benches_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = checkout(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no uv, no npm
    monkeypatch.delenv("UV", raising=False)
    peer = Peer("nodepeer", ("left-pad",), ("worker_jobs",), node=True)
    assert main(["--only", "worker_jobs"], root=root, peers=[peer]) == 0
    latest = (root / "bench" / "results" / "latest.md").read_text()
    assert "| peers, installed side by side (nodepeer 0 s failed) |" in latest
    assert "| worker_jobs | No-op jobs/s, one worker process |" in latest
