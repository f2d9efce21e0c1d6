"""capacity_check at smoke size: calibration, prediction and measurement on real stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import capacity_check
from tests.bench.support import finite_positive, well_formed

pytestmark = pytest.mark.timeout(300)


def test_smoke_run_predicts_and_measures_every_variant(tmp_path: Path) -> None:
    result = capacity_check.run("smoke", tmp_path)
    stored = well_formed(result, capacity_check.NAME, check_ratios=False)
    variants = capacity_check._variants()
    assert "optimized" in variants
    assert {row["variant"] for row in stored["rows"]} == set(variants)
    for row in stored["rows"]:
        assert finite_positive(row["measured s"]), row
        assert finite_positive(row["predicted s"]), row
        assert row["bound by"] in ("cpu", "in-flight posts", "host cpu", "concurrency"), row
    for variant in variants:
        assert finite_positive(stored["figures"][f"{variant}: calibrated ms per post"])
    # Accuracy is 1 - |error|: at most 1, and every audience has one.
    assert len(result.ratios) == len(stored["rows"])
    assert all(ratio.value <= 1.0 for ratio in result.ratios)
