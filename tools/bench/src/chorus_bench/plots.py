"""Latency plots (PNG, matplotlib's Agg backend): a CDF and a box plot per distribution."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")

from matplotlib import pyplot as plt

from chorus_bench.contract import Distribution


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cdf(samples: Sequence[float]) -> tuple[list[float], list[float]]:
    """Sorted samples and the fraction of samples at or below each."""
    ordered = sorted(samples)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


def label(system: str, samples: Sequence[float], unit: str) -> str:
    """``chorus (n=200, p50 1.00 ms, p99 3.00 ms)``."""
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return f"{system} (n={len(samples)}, p50 {p50:.3g} {unit}, p99 {p99:.3g} {unit})"


def x_scale(series: dict[str, list[float]]) -> tuple[str, dict[str, float]]:
    """Log x when every sample is positive; symlog (linear around 0) when some are not.

    Millisecond-resolution timestamps give samples of exactly 0, which a log axis drops.
    """
    samples = [s for values in series.values() for s in values]
    if samples and min(samples) > 0:
        return "log", {}
    positive = [s for s in samples if s > 0]
    return "symlog", {"linthresh": min(positive) if positive else 1.0}


def plot_distribution(distribution: Distribution, path: Path) -> Path:
    """One PNG: CDF per system (left) and box plot per system (right), same x scale."""
    series = {name: values for name, values in distribution.series.items() if values}
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]}
    )
    try:
        scale, options = x_scale(series)
        for name, values in series.items():
            xs, ys = cdf(values)
            left.step(xs, ys, where="post", label=label(name, values, distribution.unit))
        left.set_xscale(scale, **options)
        left.set_xlabel(distribution.unit)
        left.set_ylabel("fraction of samples ≤ x")
        left.set_ylim(0, 1.01)
        left.grid(visible=True, which="both", alpha=0.3)
        if series:
            left.legend(fontsize="small", loc="best")
            right.boxplot(list(series.values()), orientation="horizontal", whis=(1, 99))
            right.set_yticks(range(1, len(series) + 1), list(series))
            right.set_xscale(scale, **options)
        else:
            left.text(0.5, 0.5, "no samples", ha="center", transform=left.transAxes)
        right.set_xlabel(f"{distribution.unit} (box: p25 to p75, whiskers: p1 to p99)")
        right.grid(visible=True, which="both", axis="x", alpha=0.3)
        figure.suptitle(distribution.title)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path
