"""latest.md from fixture results: every row of every bench, verdicts, not-measured rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_bench.contract import BenchResult, parse_result
from chorus_bench.report import (
    COLUMNS,
    Machine,
    Outcome,
    Step,
    fmt_met,
    fmt_number,
    fmt_ratio,
    fmt_value,
    render,
    table,
    tally,
)

FIXTURES = Path(__file__).parent / "fixtures"
MACHINE = Machine(
    date="2026-11-28T10:20:00+00:00",
    commit="abc1234",
    cpu_model="AMD EPYC",
    cpu_count=2,
    load_before=(1.5, 1.25, 0.5),
    load_after=(3.0, 2.0, 1.0),
    python="CPython 3.11.7",
)


def result(name: str) -> BenchResult:
    return parse_result(json.loads((FIXTURES / f"{name}.json").read_text()))


def outcomes() -> list[Outcome]:
    return [
        Outcome(
            name="realtime_fanout",
            seconds=4.2,
            reason="exit code 2: realtime_fanout.py: error: unrecognized arguments: --json-out",
            log="bench/results/raw/realtime_fanout.log",
        ),
        Outcome(
            name="gateway_llm",
            seconds=95.0,
            result=result("gateway_llm"),
            plots=["gateway_llm-1.png"],
        ),
        Outcome(name="worker_jobs", seconds=88.4, result=result("worker_jobs")),
    ]


def data_lines(lines: list[str]) -> list[list[str]]:
    """The cells of each table row below the header and separator."""
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (0.0, "0.00"),
        (0.00853, "0.00853"),
        (4.0, "4.00"),
        (29.04, "29.0"),
        (469.0, "469"),
        (15234.5, "15,234"),
        (-2.5, "-2.50"),
    ],
)
def test_numbers_keep_the_digits_a_noisy_benchmark_deserves(value: float | None, text: str) -> None:
    assert fmt_number(value) == text


def test_values_carry_unit_and_spread() -> None:
    assert fmt_value(292.4, (290.8, 404.2), "jobs/s") == "292 jobs/s (291\u2013404)"
    assert fmt_value(4.0, None, "ms") == "4.00 ms"
    assert fmt_value(None, (1.0, 2.0), "ms") == "—"
    assert fmt_ratio(1.2558) == "1.26\u00d7"
    assert fmt_ratio(None) == "—"
    assert [fmt_met(True), fmt_met(False), fmt_met(None)] == ["yes", "**no**", "—"]


def test_the_table_has_every_row_of_every_bench_in_run_order() -> None:
    lines = table(outcomes())
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    rows = data_lines(lines)
    gateway, worker = result("gateway_llm"), result("worker_jobs")
    assert [r[0] for r in rows] == ["realtime_fanout"] + ["gateway_llm"] * len(gateway.rows) + [
        "worker_jobs"
    ] * len(worker.rows)
    assert [r[1] for r in rows[1:]] == [r.figure for r in gateway.rows + worker.rows]
    assert all(len(r) == len(COLUMNS) for r in rows)


def test_a_measured_row_shows_peer_chorus_ratio_target_and_verdict() -> None:
    rows = data_lines(table(outcomes()))
    throughput = next(r for r in rows if r[1] == "No-op jobs/s, one worker process")
    row = result("worker_jobs").rows[0]
    assert throughput[2] == row.peer
    assert throughput[3] == fmt_value(row.peer_value, row.peer_spread, "jobs/s")
    assert throughput[4] == fmt_value(row.chorus, row.chorus_spread, "jobs/s")
    assert throughput[5] == fmt_ratio(row.ratio)
    assert throughput[6] == row.target
    assert throughput[7] == "**no**"


def test_a_failed_bench_is_one_not_measured_row_with_its_reason() -> None:
    [row] = [r for r in data_lines(table(outcomes())) if r[0] == "realtime_fanout"]
    assert row[1] == (
        "not measured: exit code 2: realtime_fanout.py: error: unrecognized arguments: --json-out"
    )
    assert row[2:] == ["—"] * (len(COLUMNS) - 2)


def test_a_bench_without_rows_is_not_measured() -> None:
    empty = BenchResult(bench="api_users", date="d", cpu_split="", rows=[])
    [row] = data_lines(table([Outcome(name="api_users", seconds=1.0, result=empty)]))
    assert row[:2] == ["api_users", "not measured: the script reported no rows"]


def test_pipes_and_newlines_cannot_break_the_table() -> None:
    lines = table(
        [
            Outcome(
                name="x",
                seconds=1.0,
                reason="exit code 1: ValueError: a | b\nsecond line",
            )
        ]
    )
    assert lines[2] == "| x | not measured: exit code 1: ValueError: a \\| b second line |" + (
        " — |" * (len(COLUMNS) - 2)
    )


def test_the_tally_counts_verdicts_and_unmeasured_benches() -> None:
    # worker: 1 met, 1 missed, 2 without a verdict; gateway: 1 met, 1 without a verdict.
    assert tally(outcomes()) == (
        "2 of 6 targets met, 1 missed, 3 without a verdict; 1 bench not measured."
    )


def test_the_report_states_machine_cpu_split_notes_plots_and_raw_files() -> None:
    text = render(MACHINE, outcomes())
    assert text.startswith("# Chorus benchmarks: latest run\n")
    assert "- **Date**: 2026-11-28T10:20:00+00:00" in text
    assert "- **Git commit**: `abc1234`" in text
    assert "- **Machine**: AMD EPYC, 2 CPUs" in text
    assert "before 1.50 / 1.25 / 0.50, after 3.00 / 2.00 / 1.00" in text
    assert "- **Python**: CPython 3.11.7" in text
    gateway = text[text.index("### gateway_llm") : text.index("### worker_jobs")]
    assert f"CPU split: {result('gateway_llm').cpu_split}" in gateway
    assert "Ran for 95 s. Measured at 2026-11-28T10:00:00+00:00." in gateway
    assert "- *Streaming chunks/s per core, 200 streams*: LiteLLM | failed to start" in gateway
    assert "- [Time to first token](gateway_llm-1.png)" in gateway
    assert "Raw result: [gateway_llm.json](gateway_llm.json)" in gateway
    failed = text[text.index("### realtime_fanout") : text.index("### gateway_llm")]
    assert "Not measured: exit code 2" in failed
    assert "Output: `bench/results/raw/realtime_fanout.log`" in failed
    assert text.index("## Figures") < text.index("### realtime_fanout")


def test_a_rerendered_report_says_so_and_claims_no_run_time() -> None:
    again = Outcome(name="worker_jobs", seconds=None, result=result("worker_jobs"))
    text = render(MACHINE, [again], rerendered=True)
    assert "**Re-rendered** (`--render-only`) from the JSON of an earlier run" in text
    assert f"Not run now. Measured at {result('worker_jobs').date}." in text
    assert "Re-rendered" not in render(MACHINE, [again])


def test_the_wall_time_names_every_step_its_share_and_the_total() -> None:
    steps = [
        Step("make: workspace venv, wrk and Node", 30.0),
        Step("peers, installed side by side", 60.0, "litellm 60 s, portkey 20 s"),
        Step("gateway_llm", 95.0),
        Step("realtime_fanout", 415.0, "not measured"),
    ]
    text = render(MACHINE, outcomes(), steps=steps, total=600.0)
    budget = text[text.index("## Wall time") : text.index("## Per bench")]
    lines = [line for line in budget.splitlines() if line.startswith("| ")]
    assert lines[1:] == [
        "| make: workspace venv, wrk and Node | 30 | 5% |",
        "| peers, installed side by side (litellm 60 s, portkey 20 s) | 60 | 10% |",
        "| gateway_llm | 95 | 16% |",
        "| realtime_fanout (not measured) | 415 | 69% |",
        "| **Total** | **600** (10 min 00 s) | — |",
    ]
    assert text.index("## Figures") < text.index("## Wall time")
    assert "## Wall time" not in render(MACHINE, outcomes())
