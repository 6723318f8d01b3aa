"""The bench result contract: what parses, and what is refused with the offending field named."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from chorus_bench.contract import MAX_SAMPLES, ContractError, load_result, parse_result

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return document


def test_a_real_worker_result_parses_with_every_row_and_series() -> None:
    document = fixture("worker_jobs")
    result = parse_result(document)
    assert result.bench == "worker_jobs"
    assert [r.figure for r in result.rows] == [r["figure"] for r in document["rows"]]
    throughput = result.rows[0]
    assert throughput.chorus == document["rows"][0]["chorus"]
    assert throughput.peer_spread == tuple(document["rows"][0]["peer_spread"])
    assert throughput.met is False
    assert result.rows[2].met is None
    [distribution] = result.distributions
    assert distribution.series == document["distributions"][0]["series"]


def test_nulls_and_missing_optionals_are_accepted() -> None:
    document = fixture("gateway_llm")
    del document["distributions"]
    del document["rows"][0]["note"]
    result = parse_result(document)
    assert result.distributions == []
    assert result.rows[0].note == ""
    assert result.rows[1].peer_value is None
    assert result.rows[1].ratio is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("rows"), "result.rows: expected a list"),
        (lambda d: d.update(cpu_split=3), "result.cpu_split: expected a string, got int"),
        (lambda d: d["rows"][1].update(met="yes"), "rows[1].met: expected true, false or null"),
        (lambda d: d["rows"][0].update(chorus="fast"), "rows[0].chorus: expected a number"),
        (lambda d: d["rows"][0].update(ratio=True), "rows[0].ratio: expected a number, got bool"),
        (lambda d: d["rows"][0].update(peer_spread=[5, 1]), "min 5 is above max 1"),
        (
            lambda d: d["rows"][0].update(peer_spread=[1]),
            "rows[0].peer_spread: expected [min, max]",
        ),
        (lambda d: d["rows"][0].pop("figure"), "rows[0].figure: expected a string, got nothing"),
        (
            lambda d: d["distributions"][0]["series"].update(gateway=[1, "x"]),
            "distributions[0].series['gateway'][1]: expected a number",
        ),
        (
            lambda d: d["distributions"][0]["series"].update(gateway=[1.0] * (MAX_SAMPLES + 1)),
            f"at most {MAX_SAMPLES}",
        ),
    ],
)
def test_a_field_outside_the_contract_is_named(change: Any, message: str) -> None:
    document = copy.deepcopy(fixture("gateway_llm"))
    change(document)
    with pytest.raises(ContractError, match=re.escape(message)):
        parse_result(document)


def test_non_finite_numbers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    document = fixture("gateway_llm")
    document["rows"][0]["chorus"] = float("nan")
    path.write_text(json.dumps(document))  # Python writes NaN, which strict JSON has not
    with pytest.raises(ContractError, match="finite"):
        load_result(path)


def test_a_missing_or_broken_file_is_a_contract_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=re.escape("no JSON written to absent.json")):
        load_result(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"bench": "x", "rows": [')
    with pytest.raises(ContractError, match=re.escape("broken.json is not valid JSON")):
        load_result(broken)
