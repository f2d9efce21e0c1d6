"""stage_headroom at smoke size: posts delivered, the stage's CPU seen, connects counted."""

from __future__ import annotations

import pytest

from bench import stage_headroom
from bench.record import BenchResult
from tests.bench.support import finite_positive, well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return stage_headroom.run("smoke", tmp_path_factory.mktemp("stage_headroom"))


def test_result_is_well_formed(result: BenchResult) -> None:
    well_formed(result, stage_headroom.NAME)
    assert len(result.rows) == len(stage_headroom.PLANS["smoke"].payloads) + len(
        stage_headroom.STORMS
    )
    storms = [row["path"] for row in result.rows if str(row["path"]).startswith("$connect")]
    assert any("dynalite" in str(path) for path in storms)
    assert any("moto" in str(path) for path in storms)


def test_every_operation_completed(result: BenchResult) -> None:
    for row in result.rows:
        assert row["all delivered"] is True, row
        assert finite_positive(row["rate/s"]), row


def test_stage_ceiling_and_connect_costs_are_sane(result: BenchResult) -> None:
    post = result.rows[0]
    assert finite_positive(post["per stage-CPU-second"])
    assert finite_positive(post["stage CPU % of a core"])
    for connect in result.rows[len(stage_headroom.PLANS["smoke"].payloads) :]:
        # each emulator's CPU is seen: the process was recognised by its role
        assert finite_positive(connect["emulator CPU ms/op"]), connect
        assert finite_positive(connect["ConnectFunction CPU ms/op"]), connect
    for name, value in result.figures.items():
        assert finite_positive(value), name
