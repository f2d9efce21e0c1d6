"""cost_curve at smoke size, through the command line: the fit, the page boundary, the files."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench import cost_curve
from bench.__main__ import main
from tests.bench.support import finite_positive


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``python -m bench cost_curve --size smoke`` into a scratch results folder."""
    results = tmp_path_factory.mktemp("results")
    work = tmp_path_factory.mktemp("work")
    args = ["cost_curve", "--size", "smoke", "--results-dir", str(results), "--work-dir", str(work)]
    assert main(args) == 0
    (json_file,) = results.glob("*.json")
    (md_file,) = results.glob("*.md")
    assert "cost_curve" in md_file.read_text()
    document: dict[str, Any] = json.loads(json_file.read_text())
    return dict(document["benchmarks"]["cost_curve"])


def test_files_hold_a_stamped_result(stored: dict[str, Any]) -> None:
    assert stored["name"] == cost_curve.NAME
    assert stored["size"] == "smoke"
    assert stored["machine"]["cores"] >= 1
    assert stored["versions"]["moto"] != "absent"
    assert stored["parameters"]["audiences"] == list(cost_curve.PLANS["smoke"].audiences)


def test_every_send_reached_everyone(stored: dict[str, Any]) -> None:
    for row in stored["rows"]:
        assert row["delivered"] == row["recipients"] == row["N"] - 1, row
        assert finite_positive(row["FanoutMs"]), row
        assert row["ItemsScanned"] >= row["N"], row


def test_fit_is_sane(stored: dict[str, Any]) -> None:
    figures = stored["figures"]
    assert finite_positive(figures["FanoutMs slope, ms/recipient"])
    assert 0 <= figures["FanoutMs fit r²"] <= 1
    assert finite_positive(figures["items per 1 MB page (moto)"])


def test_padding_crosses_the_page_and_is_cleaned_up(stored: dict[str, Any]) -> None:
    rows = {row["send"]: row for row in stored["rows"]}
    pads = stored["figures"]["padded dummy items put per send"]
    padded, cleaned = rows[cost_curve.PADDED], rows[cost_curve.CLEANED]
    assert padded["ScanPages"] >= 2
    assert padded["StaleRemoved"] == padded["Gone"] == pads * stored["parameters"]["reps"]
    assert cleaned["ScanPages"] == 1
    assert cleaned["Gone"] == 0
    for ratio in stored["ratios"]:
        assert finite_positive(ratio["value"]), ratio
