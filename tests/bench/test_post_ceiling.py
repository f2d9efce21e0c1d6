"""post_ceiling at smoke size: every path posts, every frame arrives, ratios are sane."""

from __future__ import annotations

import pytest

from bench import post_ceiling
from bench.record import BenchResult
from tests.bench.support import finite_non_negative, finite_positive, well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return post_ceiling.run("smoke", tmp_path_factory.mktemp("post_ceiling"))


def test_result_is_well_formed(result: BenchResult) -> None:
    well_formed(result, post_ceiling.NAME)
    paths = [row["path"] for row in result.rows]
    assert len(paths) == 5
    assert post_ceiling.HANDLER in paths
    assert any(r.target == post_ceiling.TARGET for r in result.ratios)


def test_every_post_was_delivered(result: BenchResult) -> None:
    for row in result.rows:
        assert row["posts"] == row["delivered"], row
        assert row["posts"] > 0  # type: ignore[operator]
        assert row["all frames arrived"] is True, row


def test_rates_and_cpu_are_sane(result: BenchResult) -> None:
    for row in result.rows:
        assert finite_positive(row["posts/s"]), row
        assert finite_non_negative(row["stage CPU ms/post"]), row
        if row["path"] == post_ceiling.HANDLER:
            assert finite_non_negative(row["client CPU ms/post"]), row
        else:  # process_time has sub-millisecond resolution
            assert finite_positive(row["client CPU ms/post"]), row
