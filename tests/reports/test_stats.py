"""Percentiles, Wilson intervals and bootstrap intervals on inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports.stats import bootstrap_difference, bootstrap_ratio, percentiles, wilson_interval


def nearest_rank(values: list[float], p: float) -> float:
    """The textbook definition: the smallest value with at least p % of values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def test_percentiles_of_one_to_a_hundred_are_nearest_rank() -> None:
    result = percentiles(np.arange(1, 101, dtype=np.float64))
    assert result == {
        "p50": 50.0,
        "p90": 90.0,
        "p99": 99.0,
        "p99.9": 100.0,
        "max": 100.0,
        "mean": 50.5,
    }


def test_percentiles_of_one_to_ten_are_nearest_rank() -> None:
    result = percentiles(np.array([7, 3, 9, 1, 10, 2, 8, 4, 6, 5], dtype=np.float64))
    assert (result["p50"], result["p90"], result["p99"], result["max"]) == (5.0, 9.0, 10.0, 10.0)


def test_percentiles_report_values_that_occurred() -> None:
    values = np.array([1.0, 1000.0])
    result = percentiles(values)
    assert result["p50"] == 1.0
    assert result["p99"] == 1000.0
    assert result["mean"] == 500.5


def test_percentiles_of_a_single_value() -> None:
    result = percentiles(np.array([4.25]))
    assert set(result.values()) == {4.25}


def test_percentiles_of_nothing_are_none() -> None:
    result = percentiles(np.array([], dtype=np.float64))
    assert set(result) == {"p50", "p90", "p99", "p99.9", "max", "mean"}
    assert set(result.values()) == {None}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=300))
def test_percentiles_match_the_nearest_rank_definition(raw: list[int]) -> None:
    values = [float(v) for v in raw]
    result = percentiles(np.array(values))
    for key, p in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)):
        assert result[key] == nearest_rank(values, p), key
    assert result["max"] == max(values)


# --- Wilson ----------------------------------------------------------------------------


def test_wilson_zero_of_a_hundred() -> None:
    low, high = wilson_interval(0, 100)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.0370, abs=5e-4)


def test_wilson_half_of_a_hundred() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=5e-4)
    assert high == pytest.approx(0.5962, abs=5e-4)


def test_wilson_all_of_a_hundred_mirrors_none() -> None:
    low, high = wilson_interval(100, 100)
    assert high == pytest.approx(1.0, abs=1e-12)
    assert low == pytest.approx(1 - wilson_interval(0, 100)[1], abs=1e-12)


def test_wilson_without_trials_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_narrows_with_more_trials() -> None:
    small = wilson_interval(5, 50)
    large = wilson_interval(500, 5000)
    assert small[0] < large[0] < 0.1 < large[1] < small[1]


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_observed_rate(case: tuple[int, int]) -> None:
    successes, trials = case
    low, high = wilson_interval(successes, trials)
    assert 0.0 <= low <= successes / trials + 1e-12
    assert successes / trials - 1e-12 <= high <= 1.0


# --- bootstrap ---------------------------------------------------------------------------


def test_bootstrap_ratio_contains_the_true_ratio() -> None:
    rng = np.random.default_rng(12345)
    a = rng.exponential(scale=20.0, size=4000)
    b = rng.exponential(scale=10.0, size=4000)  # every percentile of a is twice b's
    point, low, high = bootstrap_ratio(a, b, 50.0, rounds=300, seed=1)
    assert point == pytest.approx(np.percentile(a, 50) / np.percentile(b, 50))
    assert low < 2.0 < high
    assert low <= point <= high
    assert high - low < 0.5
    p99 = bootstrap_ratio(a, b, 99.0, rounds=300, seed=1)
    assert p99[1] < 2.0 < p99[2]


def test_bootstrap_ratio_separates_different_distributions() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(100.0, 5.0, size=2000)
    b = rng.normal(50.0, 5.0, size=2000)
    _, low, high = bootstrap_ratio(a, b, 90.0, rounds=200)
    assert 1.0 < low < high


def test_bootstrap_ratio_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(500), rng.random(500) + 0.5
    first = bootstrap_ratio(a, b, 50.0, rounds=100, seed=9)
    assert bootstrap_ratio(a, b, 50.0, rounds=100, seed=9) == first


def test_bootstrap_ratio_subsamples_large_inputs() -> None:
    rng = np.random.default_rng(5)
    a = rng.exponential(scale=3.0, size=30_000)
    b = rng.exponential(scale=1.0, size=30_000)
    point, low, high = bootstrap_ratio(a, b, 50.0, rounds=50, max_sample=2000)
    assert low < 3.0 < high
    assert point == pytest.approx(np.percentile(a, 50) / np.percentile(b, 50))


def test_bootstrap_ratio_of_nothing_is_nan() -> None:
    empty = np.array([], dtype=np.float64)
    assert all(math.isnan(v) for v in bootstrap_ratio(empty, np.ones(3), 50.0))
    assert all(math.isnan(v) for v in bootstrap_ratio(np.ones(3), empty, 50.0))


def test_bootstrap_difference_contains_the_true_difference() -> None:
    point, low, high = bootstrap_difference(300, 1000, 100, 1000, rounds=1000)
    assert point == pytest.approx(0.2)
    assert low < 0.2 < high
    assert low > 0.0  # 30 % vs 10 % over a thousand trials each is clearly different
    assert high - low < 0.1


def test_bootstrap_difference_of_equal_rates_straddles_zero() -> None:
    point, low, high = bootstrap_difference(50, 1000, 50, 1000)
    assert point == 0.0
    assert low < 0.0 < high


def test_bootstrap_difference_without_trials_is_nan() -> None:
    assert all(math.isnan(v) for v in bootstrap_difference(1, 0, 1, 10))
    assert all(math.isnan(v) for v in bootstrap_difference(1, 10, 0, 0))


def test_bootstrap_difference_is_deterministic_for_a_seed() -> None:
    assert bootstrap_difference(7, 90, 3, 80, seed=4) == bootstrap_difference(7, 90, 3, 80, seed=4)
