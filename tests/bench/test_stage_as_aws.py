"""stage_as_aws at smoke size: the tutorial's app and a Python handler, side by side on TLS."""

from __future__ import annotations

import math
import shutil

import pytest

from bench import stage_as_aws
from bench.record import BenchResult
from tests.bench.support import finite_positive, well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    return stage_as_aws.run("smoke", tmp_path_factory.mktemp("stage_as_aws"))


def test_every_contender_reaches_every_recipient(result: BenchResult) -> None:
    well_formed(result, stage_as_aws.NAME, check_ratios=False)
    plan = stage_as_aws.PLANS["smoke"]
    assert [row["contender"] for row in result.rows] == [c.label for c in plan.contenders]
    for row in result.rows:
        assert row["recipients"] == row["N"] - 1  # type: ignore[operator]
        assert row["delivered"] == row["recipients"], row
        assert finite_positive(row["to last delivery s"]), row
        assert finite_positive(row["Lambda $/M msgs"]), row
    assert {row["MemorySize MB"] for row in result.rows} == {256, 1024}


def test_ratios_are_against_the_tutorial(result: BenchResult) -> None:
    assert len(result.ratios) == 3  # baseline/tutorial: time, CPU per post, $
    for ratio in result.ratios:
        assert ratio.name.startswith("baseline/tutorial"), ratio
        # A handful of smoke-sized posts can cost less than one CPU tick: 0 / 0 is unknown.
        assert math.isnan(ratio.value) or ratio.value >= 0, ratio


def test_lambda_cost_shares_one_request_among_the_recipients() -> None:
    one = stage_as_aws.lambda_usd_per_million_messages(0.0, 1024, 1)
    assert one == pytest.approx(0.20)  # $0.20 per million requests
    assert stage_as_aws.lambda_usd_per_million_messages(0.0, 1024, 10) == pytest.approx(0.02)
    assert math.isnan(stage_as_aws.lambda_usd_per_million_messages(1.0, 1024, 0))
