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


def median_standard_error(sample: npt.NDArray[Any]) -> float:
    """The standard error of a sample's median, robustly: the spread as 1.4826 median absolute
    deviations (sigma for a normal sample, unmoved by a few outliers), times the median's
    asymptotic 1.2533 / sqrt(n). NaN for an empty sample."""
    values = np.asarray(sample, dtype=float)
    if values.size == 0:
        return math.nan
    spread = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    return 1.2533 * spread / math.sqrt(values.size)


def wilson_interval(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial proportion (good near 0, unlike Wald).

    ``trials`` may be fractional: an effective count of clustered trials
    (``clustered_rate_interval``).
    """
    if trials <= 0:
        return (0.0, 1.0)
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 (or 1) the bound is exact; rounding would leave a speck such as 7e-18.
    low = 0.0 if rate == 0 else max(0.0, centre - half)
    high = 1.0 if rate == 1 else min(1.0, centre + half)
    return (low, high)


class ClusteredSample:
    """Values grouped in clusters that share their fate: a message's deliveries.

    One Lambda invocation serves every recipient of a message, so a slow (or lost)
    invocation moves all its deliveries together; they are not independent draws.
    Resampling must therefore draw whole clusters (the "cluster bootstrap",
    Davison & Hinkley, *Bootstrap Methods and their Application*, 1997, §3.8).
    A round draws each cluster's multiplicity and takes a weighted percentile of the
    values, sorted once, so a round costs O(values) with no copying.
    """

    def __init__(self, values: npt.NDArray[Any], clusters: npt.NDArray[Any]) -> None:
        values = np.asarray(values, dtype=np.float64)
        if len(values) != len(clusters):
            raise ValueError("values and clusters must have the same length")
        order = np.argsort(values, kind="stable")
        _, codes = np.unique(np.asarray(clusters), return_inverse=True)
        self.sorted_values = values[order]
        self.cluster_of_sorted = codes.reshape(-1)[order].astype(np.int64)
        self.clusters = int(codes.max(initial=-1)) + 1

    def __len__(self) -> int:
        return len(self.sorted_values)

    def percentile(self, percentile: float, weights: npt.NDArray[np.int64] | None = None) -> float:
        """Nearest-rank percentile, each cluster's values counted ``weights[cluster]`` times."""
        if weights is None:
            cumulative = np.arange(1, len(self.sorted_values) + 1)
        else:
            cumulative = np.cumsum(weights[self.cluster_of_sorted])
        rank = percentile / 100.0 * float(cumulative[-1])
        index = int(np.searchsorted(cumulative, rank, side="left"))
        return float(self.sorted_values[min(index, len(self.sorted_values) - 1)])

    def resampled_weights(self, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """How often each cluster is drawn when drawing as many clusters as there are."""
        drawn = rng.integers(0, self.clusters, self.clusters)
        return np.bincount(drawn, minlength=self.clusters).astype(np.int64)


def bootstrap_ratio(
    a: ClusteredSample, b: ClusteredSample, percentile: float, rounds: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """percentile(a)/percentile(b) with a 95 % cluster-bootstrap (percentile) interval.

    Each round resamples the clusters (messages) of each side with replacement,
    keeping all of a cluster's values, so the interval reflects how much the
    percentile moves when different messages happen to be sent.
    """
    if not len(a) or not len(b):
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    point = a.percentile(percentile) / b.percentile(percentile)
    ratios = np.empty(rounds)
    for i in range(rounds):
        ratios[i] = a.percentile(percentile, a.resampled_weights(rng)) / b.percentile(
            percentile, b.resampled_weights(rng)
        )
    low, high = np.percentile(ratios, [2.5, 97.5])
    return (point, float(low), float(high))


def effective_trials(hits: npt.NDArray[Any], trials: npt.NDArray[Any]) -> float:
    """How many independent trials clustered counts are worth (Kish's effective sample size).

    ``hits[i]`` of ``trials[i]`` in cluster ``i`` (lost of expected deliveries per
    message). From the between-cluster variance of the ratio estimator
    (Cochran, *Sampling Techniques*, 1977, §6.11), n_eff = p(1 − p)/var. It is
    bounded above by the plain count and below by the case of full correlation,
    where each cluster is all hit or all missed: n_eff = (Σ trials)² / Σ trials².
    With no hit at all the correlation cannot be estimated, so that bound is used:
    zero losses among 590 messages say less than zero among their 11,167 deliveries.
    """
    hits = np.asarray(hits, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    keep = trials > 0
    hits, trials = hits[keep], trials[keep]
    total = float(trials.sum())
    if total <= 0:
        return 0.0
    fewest = total * total / float(np.sum(trials * trials))
    clusters = len(trials)
    rate = float(hits.sum()) / total
    if clusters < 2 or rate in (0.0, 1.0):
        return fewest
    residual = hits - rate * trials
    variance = clusters / (clusters - 1) * float(np.sum(residual * residual)) / (total * total)
    if variance <= 0:
        return total
    return min(total, max(fewest, rate * (1 - rate) / variance))


def clustered_rate_interval(
    hits: npt.NDArray[Any], trials: npt.NDArray[Any], z: float = Z95
) -> tuple[float, float]:
    """95 % Wilson interval for Σhits/Σtrials, counted in effective (message) trials."""
    total = float(np.sum(trials))
    n_eff = effective_trials(hits, trials)
    if total <= 0 or n_eff <= 0:
        return (0.0, 1.0)
    return wilson_interval(float(np.sum(hits)) / total * n_eff, n_eff, z)


def bootstrap_difference(
    hits_a: npt.NDArray[Any],
    trials_a: npt.NDArray[Any],
    hits_b: npt.NDArray[Any],
    trials_b: npt.NDArray[Any],
    rounds: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """rate_a − rate_b with a 95 % parametric-bootstrap interval, from per-cluster counts.

    Each side counts as its effective number of trials (``effective_trials``), not
    its deliveries. Each round first draws each side's underlying rate from its
    Jeffreys posterior, Beta(hits + ½, misses + ½), then resamples the counts at
    that rate. Plain resampling at the observed rate would collapse to "0 to 0"
    whenever both runs lost nothing, claiming a certainty that a finite run cannot give.
    """
    total_a, total_b = float(np.sum(trials_a)), float(np.sum(trials_b))
    if total_a <= 0 or total_b <= 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    rate_a, rate_b = float(np.sum(hits_a)) / total_a, float(np.sum(hits_b)) / total_b
    draws = []
    for rate, n_eff in ((rate_a, effective_trials(hits_a, trials_a)),
                        (rate_b, effective_trials(hits_b, trials_b))):  # fmt: skip
        trials = max(1, round(n_eff))
        true = rng.beta(rate * trials + 0.5, (1 - rate) * trials + 0.5, rounds)
        draws.append(rng.binomial(trials, true) / trials)
    low, high = np.percentile(draws[0] - draws[1], [2.5, 97.5])
    return (rate_a - rate_b, float(low), float(high))


def welch_interval(
    a: npt.ArrayLike, b: npt.ArrayLike, confidence: float = 0.95
) -> tuple[float, float, float]:
    """mean(a) − mean(b) with Welch's t interval (unequal variances; Welch, 1947).

    Each value is one run's statistic, so the interval holds run-to-run variation,
    which no resampling inside a run can see. Needs two runs a side; NaN otherwise.
    """
    from scipy.stats import t as student_t  # slow to import; only a comparison needs it

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return (math.nan, math.nan, math.nan)
    var_a, var_b = float(np.var(a, ddof=1)) / len(a), float(np.var(b, ddof=1)) / len(b)
    difference = float(np.mean(a) - np.mean(b))
    if var_a + var_b == 0:
        return (difference, difference, difference)
    freedom = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    half = float(student_t.ppf(0.5 + confidence / 2, freedom)) * math.sqrt(var_a + var_b)
    return (difference, difference - half, difference + half)


def between_runs_ratio(
    others: npt.ArrayLike, references: npt.ArrayLike
) -> tuple[float, float, float]:
    """Ratio of the geometric means of per-run figures, with a Welch interval on their logs.

    Percentiles are positive and vary by factors, so their logs are the scale on
    which run-to-run variation is roughly normal and symmetric.
    """
    others, references = np.asarray(others, np.float64), np.asarray(references, np.float64)
    if np.any(~(others > 0)) or np.any(~(references > 0)):
        return (math.nan, math.nan, math.nan)
    point, low, high = welch_interval(np.log(others), np.log(references))
    return (
        (math.exp(point), math.exp(low), math.exp(high))
        if math.isfinite(point)
        else (
            math.nan,
            math.nan,
            math.nan,
        )
    )
