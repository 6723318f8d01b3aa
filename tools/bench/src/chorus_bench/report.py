"""``bench/results/latest.md``: pure functions from results to Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from chorus_bench.contract import BenchResult, Row

COLUMNS = (
    "Bench",
    "Figure",
    "Peer",
    "Peer value (spread)",
    "Chorus (spread)",
    "Ratio",
    "Target",
    "Met?",
)
NONE = "—"


@dataclass(frozen=True)
class Machine:
    """Where and when the benchmarks ran."""

    date: str
    commit: str
    cpu_model: str
    cpu_count: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    python: str


@dataclass(frozen=True)
class Outcome:
    """One bench script's run: its result, or why there is none."""

    name: str
    seconds: float | None  # None: not run now (the report is re-rendered from its JSON)
    result: BenchResult | None = None
    reason: str = ""
    plots: list[str] = field(default_factory=list)
    log: str = ""


@dataclass(frozen=True)
class Step:
    """Where a run's wall time went: a bootstrap step or a bench script, in seconds."""

    name: str
    seconds: float
    note: str = ""


def fmt_number(value: float | None) -> str:
    """A figure with as many digits as a noisy benchmark deserves."""
    if value is None:
        return NONE
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_value(value: float | None, spread: tuple[float, float] | None, unit: str) -> str:
    """``12,345 jobs/s (12,001 to 12,800)`` (en dash); the spread only when there is one."""
    if value is None:
        return NONE
    text = f"{fmt_number(value)} {unit}".rstrip()
    if spread is not None:
        text += f" ({fmt_number(spread[0])}\u2013{fmt_number(spread[1])})"
    return text


def fmt_ratio(ratio: float | None) -> str:
    return NONE if ratio is None else f"{fmt_number(ratio)}\u00d7"


def fmt_met(met: bool | None) -> str:
    if met is None:
        return NONE
    return "yes" if met else "**no**"


def cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    flat = " ".join(text.split())
    return flat.replace("|", "\\|") or NONE


def table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def row_cells(bench: str, row: Row) -> list[str]:
    return [
        bench,
        row.figure,
        row.peer,
        fmt_value(row.peer_value, row.peer_spread, row.unit),
        fmt_value(row.chorus, row.chorus_spread, row.unit),
        fmt_ratio(row.ratio),
        row.target,
        fmt_met(row.met),
    ]


def not_measured_cells(outcome: Outcome) -> list[str]:
    return [outcome.name, f"not measured: {outcome.reason}", *([NONE] * (len(COLUMNS) - 2))]


def table(outcomes: Sequence[Outcome]) -> list[str]:
    """One table with every row of every bench, in the order the benches ran."""
    lines = [table_line(COLUMNS), "|" + "---|" * len(COLUMNS)]
    for outcome in outcomes:
        if outcome.result is None:
            lines.append(table_line(not_measured_cells(outcome)))
        elif not outcome.result.rows:
            lines.append(table_line(not_measured_cells(_no_rows(outcome))))
        else:
            lines.extend(table_line(row_cells(outcome.name, r)) for r in outcome.result.rows)
    return lines


def _no_rows(outcome: Outcome) -> Outcome:
    return Outcome(name=outcome.name, seconds=outcome.seconds, reason="the script reported no rows")


def tally(outcomes: Sequence[Outcome]) -> str:
    """``3 of 5 targets met, 1 missed, 1 without a verdict; 2 benches not measured``."""
    rows = [r for o in outcomes if o.result is not None for r in o.result.rows]
    met = sum(r.met is True for r in rows)
    missed = sum(r.met is False for r in rows)
    open_ = sum(r.met is None for r in rows)
    unmeasured = sum(o.result is None or not o.result.rows for o in outcomes)
    text = f"{met} of {len(rows)} targets met, {missed} missed"
    if open_:
        text += f", {open_} without a verdict"
    bench_word = "bench" if unmeasured == 1 else "benches"
    return text + f"; {unmeasured} {bench_word} not measured."


def fmt_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def header(machine: Machine, *, rerendered: bool = False) -> list[str]:
    lines = [
        "# Chorus benchmarks: latest run",
        "",
        "Written by `make bench` (`bench/run.py`). Each bench script runs Chorus and its peer",
        "side by side in the same run on the same machine; figures are medians of repeated",
        "runs with their (min to max) spread. **Ratio** is Chorus ÷ peer as each script reports",
        "it (above 1 is better for rates, below 1 for latencies and memory).",
        "",
        f"- **Date**: {machine.date}",
        f"- **Git commit**: `{machine.commit}`",
        f"- **Machine**: {machine.cpu_model}, {machine.cpu_count} CPUs",
        f"- **Load average** (1 / 5 / 15 min): before {fmt_load(machine.load_before)}, "
        f"after {fmt_load(machine.load_after)}",
        f"- **Python**: {machine.python}",
        "",
        "A shared machine makes these numbers noisy: compare ratios measured in one run, not",
        "absolute figures across runs, and read the load average before trusting either.",
    ]
    if rerendered:
        lines += [
            "",
            "**Re-rendered** (`--render-only`) from the JSON of an earlier run: the date, commit",
            "and load average above are the re-rendering's; each bench says when it measured.",
        ]
    return lines


def section(outcome: Outcome) -> list[str]:
    """One bench's CPU split, notes, plots and raw files."""
    lines = [f"### {outcome.name}", ""]
    ran = "Not run now." if outcome.seconds is None else f"Ran for {outcome.seconds:.0f} s."
    if outcome.result is None:
        lines.append(f"{ran} Not measured: {outcome.reason}.")
    else:
        result = outcome.result
        cpu = result.cpu_split.strip() or "(the script did not say)"
        lines.append(f"{ran} Measured at {result.date}. CPU split: {cpu}")
        notes = [(r.figure, r.note) for r in result.rows if r.note.strip()]
        if notes:
            lines.append("")
            lines.extend(f"- *{cell(f)}*: {' '.join(n.split())}" for f, n in notes)
        if outcome.plots:
            lines.append("")
            titles = [d.title for d in result.distributions]
            for plot, title in zip(outcome.plots, titles, strict=False):
                lines.append(f"- [{cell(title)}]({plot})")
        lines.append("")
        lines.append(f"Raw result: [{outcome.name}.json]({outcome.name}.json)")
    if outcome.log:
        lines.append(f"Output: `{outcome.log}`")
    return lines


def wall_time(steps: Sequence[Step], total: float) -> list[str]:
    """The run's budget: every bootstrap step and bench script with its seconds, and the sum."""
    lines = [
        "## Wall time",
        "",
        "From `make bench` to this report; the bootstrap is what a fresh clone installs",
        "(a later run finds it in place and takes about nothing).",
        "",
        "| Step | Seconds | Share |",
        "|---|---|---|",
    ]
    for step in steps:
        name = f"{step.name} ({step.note})" if step.note else step.name
        share = f"{step.seconds / total:.0%}" if total > 0 else NONE
        lines.append(table_line([name, f"{step.seconds:,.0f}", share]))
    minutes, seconds = divmod(round(total), 60)
    lines.append(table_line(["**Total**", f"**{total:,.0f}** ({minutes} min {seconds:02d} s)", ""]))
    return lines


def render(
    machine: Machine,
    outcomes: Sequence[Outcome],
    *,
    rerendered: bool = False,
    steps: Sequence[Step] = (),
    total: float | None = None,
) -> str:
    """The whole ``latest.md``; ``steps`` and ``total`` (seconds) add the wall-time budget."""
    lines = header(machine, rerendered=rerendered)
    lines += ["", "## Figures", "", *table(outcomes), "", tally(outcomes), ""]
    if steps and total is not None:
        lines += [*wall_time(steps, total), ""]
    lines += ["## Per bench"]
    for outcome in outcomes:
        lines += ["", *section(outcome)]
    return "\n".join(lines) + "\n"
