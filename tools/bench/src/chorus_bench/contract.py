"""The bench result contract: what every ``bench/<name>.py --json-out PATH`` writes.

A script's JSON is checked field by field here; anything that does not fit becomes a
:class:`ContractError` with the path of the offending field, which the harness reports as
"not measured: <reason>" rather than rendering a half-understood row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_SAMPLES = 5000


class ContractError(ValueError):
    """The JSON a bench script wrote does not follow the contract."""


@dataclass(frozen=True)
class Row:
    """One figure: Chorus against one peer."""

    figure: str
    peer: str
    peer_value: float | None
    peer_spread: tuple[float, float] | None
    chorus: float | None
    chorus_spread: tuple[float, float] | None
    unit: str
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""


@dataclass(frozen=True)
class Distribution:
    """Latency samples per system, for one plot."""

    title: str
    unit: str
    series: dict[str, list[float]]


@dataclass(frozen=True)
class BenchResult:
    """Everything one bench script reported."""

    bench: str
    date: str
    cpu_split: str
    rows: list[Row]
    distributions: list[Distribution] = field(default_factory=list)


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContractError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _str(data: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ContractError(f"{where}.{key}: expected a string, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError(f"{where}: expected a number, got {_kind(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ContractError(f"{where}: expected a finite number, got {value!r}")
    return number


def _optional_number(data: dict[str, Any], key: str, where: str) -> float | None:
    value = data.get(key)
    return None if value is None else _number(value, f"{where}.{key}")


def _spread(data: dict[str, Any], key: str, where: str) -> tuple[float, float] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise ContractError(f"{where}.{key}: expected [min, max] or null")
    low, high = (_number(v, f"{where}.{key}[{i}]") for i, v in enumerate(value))
    if low > high:
        raise ContractError(f"{where}.{key}: min {low:g} is above max {high:g}")
    return (low, high)


def _row(value: Any, where: str) -> Row:
    data = _obj(value, where)
    met = data.get("met")
    if met is not None and not isinstance(met, bool):
        raise ContractError(f"{where}.met: expected true, false or null, got {_kind(met)}")
    return Row(
        figure=_str(data, "figure", where),
        peer=_str(data, "peer", where),
        peer_value=_optional_number(data, "peer_value", where),
        peer_spread=_spread(data, "peer_spread", where),
        chorus=_optional_number(data, "chorus", where),
        chorus_spread=_spread(data, "chorus_spread", where),
        unit=_str(data, "unit", where),
        ratio=_optional_number(data, "ratio", where),
        target=_str(data, "target", where),
        met=met,
        note=_str(data, "note", where, required=False),
    )


def _distribution(value: Any, where: str) -> Distribution:
    data = _obj(value, where)
    series = _obj(data.get("series"), f"{where}.series")
    parsed: dict[str, list[float]] = {}
    for system, samples in series.items():
        at = f"{where}.series[{system!r}]"
        if not isinstance(samples, list):
            raise ContractError(f"{at}: expected a list of samples, got {_kind(samples)}")
        if len(samples) > MAX_SAMPLES:
            raise ContractError(f"{at}: {len(samples)} samples, at most {MAX_SAMPLES}")
        parsed[system] = [_number(s, f"{at}[{i}]") for i, s in enumerate(samples)]
    return Distribution(
        title=_str(data, "title", where), unit=_str(data, "unit", where), series=parsed
    )


def parse_result(value: Any) -> BenchResult:
    """Check a decoded JSON document against the contract."""
    data = _obj(value, "result")
    rows = data.get("rows")
    if not isinstance(rows, list):
        raise ContractError(f"result.rows: expected a list, got {_kind(rows)}")
    distributions = data.get("distributions", [])
    if not isinstance(distributions, list):
        raise ContractError(f"result.distributions: expected a list, got {_kind(distributions)}")
    return BenchResult(
        bench=_str(data, "bench", "result"),
        date=_str(data, "date", "result"),
        cpu_split=_str(data, "cpu_split", "result"),
        rows=[_row(row, f"rows[{i}]") for i, row in enumerate(rows)],
        distributions=[
            _distribution(d, f"distributions[{i}]") for i, d in enumerate(distributions)
        ],
    )


def load_result(path: Path) -> BenchResult:
    """Read and check one script's JSON file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ContractError(f"no JSON written to {path.name}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path.name} is not valid JSON: {exc}") from exc
    return parse_result(document)
