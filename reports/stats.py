"""Small statistics, pure: percentiles, binomial intervals, bootstrap ratios."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
Z95 = 1.959963984540054


def percentiles(values: npt.NDArray[Any]) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max by nearest rank (a reported p99 is a value that occurred)."""
    keys = [f"p{p:g}" for p in PERCENTILES] + ["max", "mean"]
    if not len(values):
        return dict.fromkeys(keys, None)
    found = np.percentile(values, PERCENTILES, method="inverted_cdf")
    out: dict[str, float | None] = {k: float(v) for k, v in zip(keys, found, strict=False)}
    out["max"] = float(np.max(values))
    out["mean"] = float(np.mean(values))
    return out


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial proportion (good near 0, unlike Wald)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ratio(
    a: npt.NDArray[Any],
    b: npt.NDArray[Any],
    percentile: float,
    rounds: int = 1000,
    seed: int = 0,
    max_sample: int = 20_000,
) -> tuple[float, float, float]:
    """percentile(a)/percentile(b) with a 95 % percentile-bootstrap interval.

    Large inputs are subsampled to ``max_sample`` per round for speed; the point
    estimate uses all values.
    """
    if not len(a) or not len(b):
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    point = float(np.percentile(a, percentile) / np.percentile(b, percentile))
    size_a, size_b = min(len(a), max_sample), min(len(b), max_sample)
    ratios = np.empty(rounds)
    for i in range(rounds):
        sample_a = a[rng.integers(0, len(a), size_a)]
        sample_b = b[rng.integers(0, len(b), size_b)]
        ratios[i] = np.percentile(sample_a, percentile) / np.percentile(sample_b, percentile)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return (point, float(low), float(high))


def bootstrap_difference(
    hits_a: int, trials_a: int, hits_b: int, trials_b: int, rounds: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """rate_a − rate_b with a 95 % parametric-bootstrap interval.

    Each round first draws each run's underlying rate from its Jeffreys posterior,
    Beta(hits + ½, misses + ½), then resamples the counts at that rate. Plain
    resampling at the observed rate would collapse to "0 to 0" whenever both runs
    lost nothing, claiming a certainty that a finite run cannot give.
    """
    if trials_a <= 0 or trials_b <= 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    rate_a, rate_b = hits_a / trials_a, hits_b / trials_b
    true_a = rng.beta(hits_a + 0.5, trials_a - hits_a + 0.5, rounds)
    true_b = rng.beta(hits_b + 0.5, trials_b - hits_b + 0.5, rounds)
    draws = rng.binomial(trials_a, true_a) / trials_a - rng.binomial(trials_b, true_b) / trials_b
    low, high = np.percentile(draws, [2.5, 97.5])
    return (rate_a - rate_b, float(low), float(high))
