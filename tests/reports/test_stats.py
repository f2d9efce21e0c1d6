"""Percentiles, Wilson intervals and bootstrap intervals on inputs with known answers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports.stats import (
    ClusteredSample,
    between_runs_ratio,
    bootstrap_difference,
    bootstrap_ratio,
    clustered_rate_interval,
    effective_trials,
    median_standard_error,
    percentiles,
    welch_interval,
    wilson_interval,
)


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


def independent(values: npt.NDArray[Any]) -> ClusteredSample:
    """Every value its own cluster: the bootstrap of independent draws."""
    return ClusteredSample(values, np.arange(len(values)))


def bernoulli(hits: int, trials: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``hits`` of ``trials`` as independent one-trial clusters."""
    return (np.arange(trials) < hits).astype(np.int64), np.ones(trials, dtype=np.int64)


def test_bootstrap_ratio_contains_the_true_ratio() -> None:
    rng = np.random.default_rng(12345)
    a = rng.exponential(scale=20.0, size=4000)
    b = rng.exponential(scale=10.0, size=4000)  # every percentile of a is twice b's
    point, low, high = bootstrap_ratio(independent(a), independent(b), 50.0, rounds=300, seed=1)
    assert point == pytest.approx(
        np.percentile(a, 50, method="inverted_cdf") / np.percentile(b, 50, method="inverted_cdf")
    )
    assert low < 2.0 < high
    assert low <= point <= high
    assert high - low < 0.5
    p99 = bootstrap_ratio(independent(a), independent(b), 99.0, rounds=300, seed=1)
    assert p99[1] < 2.0 < p99[2]


def test_bootstrap_ratio_separates_different_distributions() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(100.0, 5.0, size=2000)
    b = rng.normal(50.0, 5.0, size=2000)
    _, low, high = bootstrap_ratio(independent(a), independent(b), 90.0, rounds=200)
    assert 1.0 < low < high


def test_bootstrap_ratio_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(3)
    a, b = independent(rng.random(500)), independent(rng.random(500) + 0.5)
    first = bootstrap_ratio(a, b, 50.0, rounds=100, seed=9)
    assert bootstrap_ratio(a, b, 50.0, rounds=100, seed=9) == first


@pytest.mark.parametrize("percentile", [0.0, 10.0, 50.0, 90.0, 99.0, 99.9, 100.0])
def test_clustered_percentile_is_the_nearest_rank_one(percentile: float) -> None:
    rng = np.random.default_rng(11)
    values = rng.exponential(5.0, 1234)
    sample = ClusteredSample(values, rng.integers(0, 50, len(values)))
    expected = np.percentile(values, percentile, method="inverted_cdf")
    assert sample.percentile(percentile) == expected
    # Weighting every cluster twice repeats every value: the percentile stays.
    assert sample.percentile(percentile, np.full(sample.clusters, 2)) == expected


def test_a_cluster_weight_counts_its_values_that_often() -> None:
    sample = ClusteredSample(np.array([1.0, 2.0, 3.0, 10.0]), np.array([0, 0, 0, 1]))
    assert sample.percentile(50.0) == 2.0
    assert sample.percentile(50.0, np.array([1, 3])) == 3.0  # 1, 2, [3], 10, 10, 10
    assert sample.percentile(50.0, np.array([1, 4])) == 10.0  # 1, 2, 3, [10], 10, 10, 10
    assert sample.percentile(50.0, np.array([1, 0])) == 2.0  # 1, 2, 3


def test_bootstrap_ratio_of_nothing_is_nan() -> None:
    empty = independent(np.array([], dtype=np.float64))
    assert all(math.isnan(v) for v in bootstrap_ratio(empty, independent(np.ones(3)), 50.0))
    assert all(math.isnan(v) for v in bootstrap_ratio(independent(np.ones(3)), empty, 50.0))


def _identical_run(
    rng: np.random.Generator, messages: int = 600, recipients: int = 19
) -> ClusteredSample:
    """A run's deliveries: one shared invocation delay per message plus a little spread."""
    invocation_ms = rng.lognormal(np.log(20.0), 0.5, messages)
    spread_ms = rng.uniform(0.0, 4.0, (messages, recipients))
    return ClusteredSample(
        (invocation_ms[:, None] + spread_ms).ravel(), np.repeat(np.arange(messages), recipients)
    )


def test_cluster_bootstrap_covers_the_true_ratio_of_identical_runs_as_often_as_it_says() -> None:
    """60 pairs of runs drawn from one configuration: the true p99 ratio is 1.

    Resampling deliveries as if independent excluded 1 in most pairs (the defect);
    resampling messages, at its nominal 5 %, should exclude it in about 3.
    """
    rng = np.random.default_rng(2026)
    pairs = [(_identical_run(rng), _identical_run(rng)) for _ in range(60)]

    def excluded(a: ClusteredSample, b: ClusteredSample, seed: int) -> bool:
        _, low, high = bootstrap_ratio(a, b, 99.0, rounds=300, seed=seed)
        return not low <= 1.0 <= high

    clustered = sum(excluded(a, b, seed) for seed, (a, b) in enumerate(pairs))
    flat = sum(
        excluded(independent(a.sorted_values), independent(b.sorted_values), seed)
        for seed, (a, b) in enumerate(pairs)
    )
    assert clustered <= 7  # P(Binomial(60, 0.05) >= 8) < 2 %
    assert flat >= 20


# --- loss rates --------------------------------------------------------------------------


def test_no_loss_over_590_messages_is_bounded_by_the_messages_not_the_deliveries() -> None:
    # README's run: 0 of 11,167 deliveries over 590 messages of about 19 recipients each.
    expected = np.full(590, 11_167 // 590)
    expected[: 11_167 - int(expected.sum())] += 1
    low, high = clustered_rate_interval(np.zeros(590), expected)
    assert low == 0.0
    assert high == pytest.approx(wilson_interval(0, 590)[1], rel=1e-3)  # sizes differ by one
    assert 0.0064 < high < 0.0066  # "0-0.65 %", not the 0.034 % of independent deliveries


def test_effective_trials_is_the_count_for_independent_losses() -> None:
    hits, trials = bernoulli(30, 1000)
    assert effective_trials(hits, trials) == pytest.approx(1000, rel=0.01)
    assert clustered_rate_interval(hits, trials) == pytest.approx(
        wilson_interval(30, 1000), rel=0.01
    )


def test_effective_trials_counts_whole_lost_messages_as_one_trial_each() -> None:
    # 100 messages of 10 recipients, 5 messages lost outright: 5 of 100, not 50 of 1,000.
    trials = np.full(100, 10)
    hits = np.where(np.arange(100) < 5, 10, 0)
    assert effective_trials(hits, trials) == pytest.approx(100, rel=0.02)


def test_bootstrap_difference_contains_the_true_difference() -> None:
    point, low, high = bootstrap_difference(*bernoulli(300, 1000), *bernoulli(100, 1000))
    assert point == pytest.approx(0.2)
    assert low < 0.2 < high
    assert low > 0.0  # 30 % vs 10 % over a thousand trials each is clearly different
    assert high - low < 0.1


def test_bootstrap_difference_of_equal_rates_straddles_zero() -> None:
    point, low, high = bootstrap_difference(*bernoulli(50, 1000), *bernoulli(50, 1000))
    assert point == 0.0
    assert low < 0.0 < high


def test_bootstrap_difference_widens_when_losses_come_in_whole_messages() -> None:
    spread = bootstrap_difference(*bernoulli(50, 1000), *bernoulli(0, 1000))
    trials = np.full(100, 10)
    whole = bootstrap_difference(np.where(np.arange(100) < 5, 10, 0), trials, *bernoulli(0, 1000))
    assert spread[0] == whole[0] == pytest.approx(0.05)
    assert whole[2] - whole[1] > 2 * (spread[2] - spread[1])
    assert whole[1] < 0.01 < spread[1]


def test_bootstrap_difference_without_trials_is_nan() -> None:
    none = (np.zeros(0), np.zeros(0))
    assert all(math.isnan(v) for v in bootstrap_difference(*none, *bernoulli(1, 10)))
    assert all(math.isnan(v) for v in bootstrap_difference(*bernoulli(1, 10), *none))


def test_bootstrap_difference_is_deterministic_for_a_seed() -> None:
    args = (*bernoulli(7, 90), *bernoulli(3, 80))
    assert bootstrap_difference(*args, seed=4) == bootstrap_difference(*args, seed=4)


# --- Welch's interval against textbook values --------------------------------------------------


def test_welch_interval_matches_the_textbook_and_scipy() -> None:
    """Per-run p99s [30, 31, 29] vs [70, 40, 55]: sample variances 1 and 225 (ddof 1), the
    Welch–Satterthwaite degrees of freedom 2.018 (not the pooled 4), t(0.975, 2.018) = 4.2665.
    Pooled freedom or population variance narrows the interval until it excludes 0."""
    from scipy.stats import ttest_ind

    a, b = [30.0, 31.0, 29.0], [70.0, 40.0, 55.0]
    point, low, high = welch_interval(a, b)
    se = math.sqrt(1 / 3 + 225 / 3)
    freedom = se**4 / ((1 / 3) ** 2 / 2 + (225 / 3) ** 2 / 2)
    assert freedom == pytest.approx(2.0178, abs=1e-4)
    assert point == -25.0
    assert (low, high) == pytest.approx((-25.0 - 4.26650 * se, -25.0 + 4.26650 * se), abs=0.01)
    assert (low, high) == pytest.approx((-62.03, 12.03), abs=0.01)
    reference = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (low, high) == pytest.approx((reference.low, reference.high))
    assert low < 0.0 < high  # pooled freedom (4) gives −49.1 to −0.9: a false "lower"


def test_welch_interval_with_equal_variances_and_sizes_is_the_student_one() -> None:
    # Equal sizes and variances: Welch's freedom is the pooled 2(n − 1) = 4, t(0.975, 4) = 2.776.
    point, low, high = welch_interval([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    half = 2.7764451 * math.sqrt(1 / 3 + 1 / 3)
    assert (point, low, high) == pytest.approx((-3.0, -3.0 - half, -3.0 + half), abs=1e-6)


def test_between_runs_ratio_of_spread_p99s_is_no_verdict() -> None:
    point, low, high = between_runs_ratio([30.0, 31.0, 29.0], [70.0, 40.0, 55.0])
    assert point == pytest.approx((30 * 31 * 29 / (70 * 40 * 55)) ** (1 / 3), rel=1e-9)
    assert low < 1.0 < high


def test_the_wilson_bound_at_zero_and_all_is_exact_with_fractional_trials() -> None:
    # Rounding in centre - half once left 7e-18 where the bound is exactly 0.
    assert wilson_interval(0, 0.1 + 0.2)[0] == 0.0
    assert wilson_interval(0.3, 0.1 + 0.2)[1] == 1.0
    assert wilson_interval(0, 590.5)[1] == pytest.approx(wilson_interval(0, 590)[1], rel=2e-3)


def test_median_standard_error_matches_the_normal_theory_and_ignores_outliers() -> None:
    rng = np.random.default_rng(3)
    medians = [float(np.median(rng.normal(0.0, 10.0, 400))) for _ in range(2_000)]
    sample = rng.normal(0.0, 10.0, 400)
    estimated = median_standard_error(sample)
    assert estimated == pytest.approx(float(np.std(medians)), rel=0.15)
    assert estimated == pytest.approx(1.2533 * 10.0 / 20.0, rel=0.15)
    with_outliers = np.concatenate([sample, [1e6, -1e6]])
    assert median_standard_error(with_outliers) == pytest.approx(estimated, rel=0.05)
    assert math.isnan(median_standard_error(np.array([])))
