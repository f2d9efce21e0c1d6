"""side_by_side at smoke size: one real A/A run is recorded, and the simulated calibration
holds its level."""

from __future__ import annotations

import pytest

from bench import side_by_side
from bench.record import BenchResult
from tests.bench.support import well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return side_by_side.run("smoke", tmp_path_factory.mktemp("side_by_side"))


def test_result_is_well_formed(result: BenchResult) -> None:
    # A 4 s smoke run on a busy host may leave no block with enough deliveries: no ratio.
    well_formed(result, side_by_side.NAME, check_ratios=False)
    (row,) = result.rows
    assert row["sides"] == "identical"
    assert row["B"] == "optimized:post_latency_ms=20"
    assert str(result.figures["identical runs called different (p50 or p99)"]).endswith("of 1")


def test_simulated_identical_pairs_are_called_different_near_5_percent() -> None:
    rates = side_by_side.simulated_false_different(200, seed=3)
    assert rates["p50"] <= 0.08
    assert rates["p99"] <= 0.08
    assert 0.0 < rates["detectable_p50"] < 0.5
