"""The benchmarks' pure parts: results files, item sizes, fits, frames, status mapping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.cost_curve import linear_fit
from bench.gen_server import text_frame
from bench.itemsize import item_size, items_per_page
from bench.posting import classify_status
from bench.record import BenchResult, Ratio, fmt, median, render_document, safe_ratio, write_results

CONNECTION_ITEM = {
    "connectionId": {"S": "BFaT_fALIAMCKug="},
    "connectedAt": {"N": "1732550400000"},
    "expiresAt": {"N": "1732558500"},
}


def test_connection_item_sizes_by_each_rule() -> None:
    assert item_size(CONNECTION_ITEM, moto=True) == 28 + 11 + 13 + 9 + 10
    # DynamoDB: one byte per two significant digits (zeros at either end trimmed), plus one.
    assert item_size(CONNECTION_ITEM) == 28 + 11 + 5 + 9 + 5
    assert items_per_page(71, moto=True) == 1_000_000 // 71
    assert items_per_page(62) == 1024 * 1024 // 62
    with pytest.raises(ValueError, match="positive"):
        items_per_page(0)


def test_linear_fit_recovers_a_line() -> None:
    slope, intercept, r2 = linear_fit([1, 2, 3, 4], [3, 5, 7, 9])
    assert slope == pytest.approx(2)
    assert intercept == pytest.approx(1)
    assert r2 == pytest.approx(1)
    assert all(math.isnan(v) for v in linear_fit([1], [1]))


@pytest.mark.parametrize(("size", "header"), [(5, b"\x81\x05"), (200, b"\x81\x7e\x00\xc8")])
def test_text_frames_are_unmasked_rfc6455(size: int, header: bytes) -> None:
    frame = text_frame(b"x" * size)
    assert frame.startswith(header)
    assert len(frame) == len(header) + size
    assert text_frame(b"x" * 70_000)[:2] == b"\x81\x7f"


def test_status_mapping_for_a_raw_http_path() -> None:
    assert classify_status(200) == "delivered"
    assert classify_status(410) == "gone"
    assert classify_status(429) == "throttled"
    assert classify_status(500) == "failed"


def test_ratio_targets_and_safe_arithmetic() -> None:
    assert Ratio("r", 12.0, 10.0).met is True
    assert Ratio("r", 9.0, 10.0).met is False
    assert Ratio("r", math.nan, 10.0).met is False
    assert Ratio("r", 1.0).met is None
    assert math.isnan(safe_ratio(1.0, 0.0))
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert fmt(1234.5) == "1,234"
    assert fmt(math.inf) == "n/a"


def test_results_merge_by_benchmark_name(tmp_path: Path) -> None:
    first = BenchResult("one", "smoke", {"n": 1}, [{"x": 1.0}], [Ratio("a/b", 2.0, 1.5)])
    second = BenchResult("two", "smoke", {"n": 2}, [{"y": 2}])
    write_results([first], tmp_path, date="2030-01-02")
    write_results([second], tmp_path, date="2030-01-02")
    replaced = BenchResult("one", "smoke", {"n": 3}, [{"x": 3.0}])
    json_path, md_path = write_results([replaced], tmp_path, date="2030-01-02")
    document = json.loads(json_path.read_text())
    assert set(document["benchmarks"]) == {"one", "two"}
    assert document["benchmarks"]["one"]["parameters"] == {"n": 3}
    assert document["benchmarks"]["two"]["versions"]["python"]
    assert md_path.read_text() == render_document(document)
    assert "### two" in md_path.read_text()


def test_unknown_benchmark_names_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["nonesuch"])
    assert "unknown benchmark nonesuch" in capsys.readouterr().err


def test_a_measured_zero_stays_zero_and_only_a_missing_figure_is_unknown() -> None:
    from bench.post_ceiling import _number

    assert _number(0.0) == 0.0
    assert _number(0) == 0.0
    assert _number(0.25) == 0.25
    assert math.isnan(_number(None))
