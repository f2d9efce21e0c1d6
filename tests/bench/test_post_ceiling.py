"""post_ceiling at smoke size: every path posts, every frame arrives, ratios are sane."""

from __future__ import annotations

import math

import pytest

from bench import post_ceiling
from bench.record import BenchResult
from tests.bench.support import finite_non_negative, finite_positive, well_formed


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return post_ceiling.run("smoke", tmp_path_factory.mktemp("post_ceiling"))


def test_result_is_well_formed(result: BenchResult) -> None:
    well_formed(result, post_ceiling.NAME, check_ratios=False)
    for ratio in result.ratios:
        if ratio.target == post_ceiling.CPU_RATIO_TARGET:
            # A few smoke-sized posts may cost less than one 10 ms /proc CPU tick: 0 or nan.
            assert math.isnan(ratio.value) or finite_non_negative(ratio.value), ratio
        else:
            assert finite_positive(ratio.value), ratio
    paths = [row["path"] for row in result.rows]
    assert len(paths) == 6
    assert set(post_ceiling.HANDLERS.values()) <= set(paths)
    assert any(r.target == post_ceiling.TARGET for r in result.ratios)
    assert any(r.target == post_ceiling.CPU_RATIO_TARGET for r in result.ratios)
    for kind in post_ceiling.POST_CLIENTS:
        figure = result.figures[f"handler Lambda CPU ms/post ({kind})"]
        assert finite_non_negative(figure), kind


def test_post_clients_are_the_handlers() -> None:
    import callbacks

    assert post_ceiling.POST_CLIENTS == callbacks.POST_CLIENTS


def test_every_post_was_delivered(result: BenchResult) -> None:
    for row in result.rows:
        assert row["posts"] == row["delivered"], row
        assert row["posts"] > 0  # type: ignore[operator]
        assert row["all frames arrived"] is True, row


def test_rates_and_cpu_are_sane(result: BenchResult) -> None:
    for row in result.rows:
        assert finite_positive(row["posts/s"]), row
        assert finite_non_negative(row["stage CPU ms/post"]), row
        if row["path"] in post_ceiling.HANDLERS.values():
            assert finite_non_negative(row["client CPU ms/post"]), row
        else:  # process_time has sub-millisecond resolution
            assert finite_positive(row["client CPU ms/post"]), row
