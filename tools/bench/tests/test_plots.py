"""Latency plots: the numbers behind them, and real PNG files out of matplotlib."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_bench.contract import Distribution, parse_result
from chorus_bench.plots import cdf, label, percentile, plot_distribution, x_scale

FIXTURES = Path(__file__).parent / "fixtures"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_percentiles_interpolate_between_ranks() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 50) == 2.5
    assert percentile(samples, 100) == 4.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_cdf_is_sorted_and_ends_at_one() -> None:
    xs, ys = cdf([3.0, 1.0, 2.0, 2.0])
    assert xs == [1.0, 2.0, 2.0, 3.0]
    assert ys == [0.25, 0.5, 0.75, 1.0]


def test_legend_label_names_count_and_percentiles() -> None:
    assert label("chorus", [1.0, 2.0, 3.0], "ms") == "chorus (n=3, p50 2 ms, p99 2.98 ms)"


def test_log_x_unless_a_sample_is_zero() -> None:
    assert x_scale({"a": [0.5, 4.0], "b": [1.0]}) == ("log", {})
    # 1 ms timestamps give exact zeros: linear around 0 up to the smallest positive sample.
    assert x_scale({"a": [0.0, 4.0], "b": [2.0]}) == ("symlog", {"linthresh": 2.0})
    assert x_scale({"a": [0.0]}) == ("symlog", {"linthresh": 1.0})


def test_a_real_distribution_becomes_a_png(tmp_path: Path) -> None:
    document = json.loads((FIXTURES / "worker_jobs.json").read_text())
    [distribution] = parse_result(document).distributions
    path = plot_distribution(distribution, tmp_path / "worker_jobs-1.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000  # a drawn figure, not an empty canvas


@pytest.mark.parametrize(
    "series",
    [
        {"direct": [0.0, 0.4, 0.5], "gateway": [1.0, 1.3], "litellm": []},
        {"nobody": []},
        {},
    ],
)
def test_zeros_and_empty_series_still_plot(tmp_path: Path, series: dict[str, list[float]]) -> None:
    path = tmp_path / "sub" / "x-1.png"
    plot_distribution(Distribution(title="TTFT", unit="ms", series=series), path)
    assert path.read_bytes()[:8] == PNG_MAGIC
