"""How often a verdict calls two identical configurations different: a simulation (pure).

A verdict at 95 % should call at most 5 % of identical pairs different. Real
runs of one configuration differ by more than their messages explain (the
machine, the stage's warm pools, what else ran): two identical fault-free runs
once measured p50 25.0 vs 22.2 ms and p99 70.4 vs 40.3 ms. The model below has
both levels: each run draws its own median and tail width; each message one
shared invocation delay; each delivery a small spread of its own. Its defaults
give runs that differ about as those two did (sd of log p50 ≈ 0.07, of log
p99 ≈ 0.37), at the README run's size (590 messages of 19 recipients).

``python -m reports.calibration [PAIRS]`` prints the false-positive rates of the
single-run bootstraps (deliveries, messages) and of the between-run verdict.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from reports.stats import ClusteredSample, between_runs_ratio, bootstrap_ratio


@dataclass(frozen=True)
class Model:
    messages: int = 590
    recipients: int = 19
    median_ms: float = 20.0
    tail_sigma: float = 0.5
    """Within a run: sigma of the lognormal invocation delay shared by a message."""
    spread_ms: float = 4.0
    """Within a message: each delivery's own uniform 0..spread_ms."""
    run_median_sd: float = 0.08
    """Between runs: sd of the log of a run's median delay."""
    run_tail_sd: float = 0.3
    """Between runs: sd of the log of a run's tail sigma."""


def simulate_run(model: Model, rng: np.random.Generator) -> ClusteredSample:
    """One run's measured latencies, clustered by message."""
    median = model.median_ms * np.exp(rng.normal(0.0, model.run_median_sd))
    sigma = model.tail_sigma * np.exp(rng.normal(0.0, model.run_tail_sd))
    invocation = rng.lognormal(np.log(median), sigma, model.messages)
    spread = rng.uniform(0.0, model.spread_ms, (model.messages, model.recipients))
    return ClusteredSample(
        (invocation[:, None] + spread).ravel(),
        np.repeat(np.arange(model.messages), model.recipients),
    )


def _excludes_one(interval: tuple[float, float, float]) -> bool:
    _, low, high = interval
    return not low <= 1.0 <= high


def false_positives(
    model: Model,
    pairs: int,
    runs_per_side: int = 3,
    seed: int = 0,
    percentile: float = 99.0,
    bootstrap_rounds: int = 200,
) -> dict[str, float]:
    """Share of identical pairs each method calls different at 95 %.

    ``between_runs``: ``runs_per_side`` runs a side, Welch's t on log per-run
    percentiles (what ``fanbench compare A... --vs B...`` does). ``messages`` and
    ``deliveries``: the first run of each side alone, cluster bootstrap over
    messages, and the old bootstrap over deliveries as if independent.
    """
    rng = np.random.default_rng(seed)
    called = {"between_runs": 0, "messages": 0, "deliveries": 0}
    for pair in range(pairs):
        a = [simulate_run(model, rng) for _ in range(runs_per_side)]
        b = [simulate_run(model, rng) for _ in range(runs_per_side)]
        per_run_a = [run.percentile(percentile) for run in a]
        per_run_b = [run.percentile(percentile) for run in b]
        called["between_runs"] += _excludes_one(between_runs_ratio(per_run_b, per_run_a))
        if bootstrap_rounds:
            first_a, first_b = a[0], b[0]
            called["messages"] += _excludes_one(
                bootstrap_ratio(first_b, first_a, percentile, bootstrap_rounds, seed=pair)
            )
            flat_a, flat_b = (
                ClusteredSample(run.sorted_values, np.arange(len(run)))
                for run in (first_a, first_b)
            )
            called["deliveries"] += _excludes_one(
                bootstrap_ratio(flat_b, flat_a, percentile, bootstrap_rounds, seed=pair)
            )
    if not bootstrap_rounds:
        del called["messages"], called["deliveries"]
    return {method: count / pairs for method, count in called.items()}


def _show(rates: dict[str, float]) -> str:
    return ", ".join(f"{method} {100 * rate:.1f} %" for method, rate in rates.items())


def main(argv: list[str]) -> None:
    pairs = int(argv[0]) if argv else 1000
    model = Model()
    for percentile in (50.0, 99.0):
        for runs in (2, 3, 5):
            rates = false_positives(
                model, pairs, runs, seed=runs, percentile=percentile,
                bootstrap_rounds=200 if runs == 3 else 0,
            )  # fmt: skip
            print(f"p{percentile:g}, {runs} runs a side, {pairs} identical pairs: {_show(rates)}")
    # Runs that differ only by their messages: what a bootstrap inside one run can see.
    steady = Model(run_median_sd=0.0, run_tail_sd=0.0)
    for percentile in (50.0, 99.0):
        rates = false_positives(steady, pairs // 5, 3, seed=9, percentile=percentile)
        print(f"p{percentile:g}, no run-to-run spread, {pairs // 5} pairs: {_show(rates)}")


if __name__ == "__main__":
    main(sys.argv[1:])
