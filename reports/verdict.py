"""The verdict of a comparison (pure): ratios, loss differences, their intervals and sentences.

One run a side: a cluster bootstrap over messages (``stats.bootstrap_ratio``),
which sees only variation within the runs. Several runs a side: each run is one
observation (Welch's t on log per-run percentiles, ``stats.between_runs_ratio``),
so run-to-run variation is in the interval; ``reports/calibration.py`` measures
how often that calls identical configurations different. Two sides run at once
(``fanbench run --variants``): paired by time block (``reports.blocked``), so the
noise both sides felt cancels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reports import page
from reports.analysis import RunFacts, lost_per_message_of, measured_window_start
from reports.blocked import SideData, compare_blocked, detectable_words
from reports.stats import (
    Z95,
    ClusteredSample,
    between_runs_ratio,
    bootstrap_difference,
    bootstrap_ratio,
    welch_interval,
)
from reports.summary import Summary

Z80 = 0.8416212335729143
"""The standard normal's 80th percentile: 80 % power."""

_factor, _signed, _percent = page.factor, page.signed, page.percent


@dataclass(frozen=True)
class Measured:
    """What the comparison needs of one run."""

    label: str
    path: Path
    summary: Summary
    facts: RunFacts

    def latency_sample(self) -> ClusteredSample:
        """Measured latencies clustered by message, for the cluster bootstrap."""
        lat = self.facts.latencies
        return ClusteredSample(lat.from_sent_ms, lat.message)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95 % interval (NaN when not computable)."""

    point: float
    low: float
    high: float

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.point, self.low, self.high))

    def as_dict(self) -> dict[str, Any]:
        point, low, high = (
            x if math.isfinite(x) else None for x in (self.point, self.low, self.high)
        )
        return {"point": point, "ci95": [low, high]}


def comparable(ratio: Interval) -> bool:
    return ratio.finite and min(ratio.point, ratio.low) > 0


def ratio_words(ratio: Interval) -> tuple[str, str]:
    """("7.9× lower", "7.1–8.8×") — the factor put the way round that is above 1."""
    if ratio.point < 1 and ratio.high < 1:
        return (f"{_factor(1 / ratio.point)}× lower",
                f"{_factor(1 / ratio.high)}–{_factor(1 / ratio.low)}×")  # fmt: skip
    if ratio.point > 1 and ratio.low > 1:
        return f"{_factor(ratio.point)}× higher", f"{_factor(ratio.low)}–{_factor(ratio.high)}×"
    # The interval holds 1: say the plain ratio rather than a direction the data do not show.
    return f"{_factor(ratio.point)}×", f"{_factor(ratio.low)}–{_factor(ratio.high)}×"


def ratio_sentence(
    label: str, reference: str, figure: str, ratio: Interval, basis: str = ""
) -> str:
    """E.g. "optimized p99 latency is 7.90× lower than baseline (95 % CI 7.10–8.80×)".

    ``basis`` (e.g. "3 vs 3 runs, between-run") follows the interval when given.
    """
    subject = f"{label} {figure} latency"
    if not comparable(ratio):
        return f"{subject}: no comparison with {reference} (too few measured deliveries)"
    factor, interval = ratio_words(ratio)
    interval += f"; {basis}" if basis else ""
    if factor.endswith(("lower", "higher")):
        return f"{subject} is {factor} than {reference} (95 % CI {interval})"
    unclear = ": no clear difference" if ratio.low <= 1 <= ratio.high else ""
    return f"{subject} is {factor} that of {reference} (95 % CI {interval}){unclear}"


def loss_sentence(
    label: str, reference: str, rates: tuple[float, float], diff: Interval, basis: str = ""
) -> str:
    """E.g. "loss rate: optimized 0.00 % vs baseline 2.01 % (difference −2.01 points, …)"."""
    if not diff.finite:
        return f"loss rate: no comparison of {label} with {reference} (no expected deliveries)"
    points = Interval(diff.point * 100, diff.low * 100, diff.high * 100)
    return (
        f"loss rate: {label} {_percent(rates[0])} vs {reference} {_percent(rates[1])} "
        f"(difference {_signed(points.point)} points, "
        f"95 % CI {_signed(points.low)} to {_signed(points.high)}{'; ' + basis if basis else ''})"
    )


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, or several runs of one configuration (trials)."""

    label: str
    runs: Sequence[Measured]

    def latency_sample(self) -> ClusteredSample:
        """Every run's measured latencies, clustered by (run, message)."""
        lats = [m.facts.latencies for m in self.runs]
        offsets = np.cumsum([0] + [int(m.facts.run.sends["client"].size) for m in self.runs])
        return ClusteredSample(
            np.concatenate([lat.from_sent_ms for lat in lats]),
            np.concatenate(
                [lat.message + offset for lat, offset in zip(lats, offsets, strict=False)]
            ),
        )

    def losses(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(lost, expected) per message, over every run of the side."""
        ledgers = [m.facts.ledger for m in self.runs]
        return (np.concatenate([lost_per_message_of(facts) for facts in ledgers]),
                np.concatenate([facts.expected_per_message for facts in ledgers]))  # fmt: skip

    def per_run(self, key: str) -> list[float]:
        """A latency percentile of each run (NaN where a run measured nothing)."""
        values = [m.summary.latency_ms.from_sent.named(key) for m in self.runs]
        return [math.nan if v is None else float(v) for v in values]

    def loss_rates(self) -> list[float]:
        return [float(m.summary.counts.loss_rate) for m in self.runs]


def side_labels(sides: Sequence[Sequence[Measured]]) -> list[str]:
    """A side is named by its runs' variant when they share one, else by its letter."""
    labels = []
    for index, runs in enumerate(sides):
        variants = {str(m.summary.variant or "") for m in runs}
        (only,) = variants if len(variants) == 1 else ("",)
        labels.append(only or chr(ord("A") + index))
    if len(set(labels)) < len(labels):  # e.g. optimized against optimized: an A/A test
        labels = [f"{label} ({chr(ord('A') + i)})" for i, label in enumerate(labels)]
    return labels


def _ratio(a: ClusteredSample, b: ClusteredSample, percentile: float) -> Interval:
    if not len(a) or not len(b):
        return Interval(math.nan, math.nan, math.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return Interval(*bootstrap_ratio(a, b, percentile))


def _within_runs(side: Side, reference: Side) -> tuple[Interval, Interval, Interval]:
    """Cluster bootstrap over the messages of the pooled runs: blind to run-to-run variation."""
    ours, theirs = side.latency_sample(), reference.latency_sample()
    diff = Interval(*bootstrap_difference(*side.losses(), *reference.losses()))
    return _ratio(ours, theirs, 50.0), _ratio(ours, theirs, 99.0), diff


def _between_runs(side: Side, reference: Side) -> tuple[Interval, Interval, Interval]:
    """Each run one observation (Welch's t), so run-to-run variation is in the interval.

    Loss rates are often 0 in every run, where runs show no spread at all; the
    loss interval is then the wider of this and the pooled message-level one.
    """
    p50, p99 = (
        Interval(*between_runs_ratio(side.per_run(key), reference.per_run(key)))
        for key in ("p50", "p99")
    )
    runs = Interval(*welch_interval(side.loss_rates(), reference.loss_rates()))
    pooled = Interval(*bootstrap_difference(*side.losses(), *reference.losses()))
    if runs.finite and pooled.finite:
        pooled = Interval(pooled.point, min(runs.low, pooled.low), max(runs.high, pooled.high))
    return p50, p99, pooled


def _pooled_rate(side: Side) -> float:
    lost, expected = side.losses()
    total = int(expected.sum())
    return int(lost.sum()) / total if total else 0.0


def compare(sides: Sequence[Side]) -> list[dict[str, Any]]:
    """Each side after the first against the first: ratios, differences and their sentences.

    With two runs or more on both sides, intervals come from the runs' spread
    (``_between_runs``); otherwise from resampling messages (``_within_runs``),
    which cannot tell a real difference from one run simply differing from another.
    """
    reference = sides[0]
    deltas: list[dict[str, Any]] = []
    for side in sides[1:]:
        between = len(side.runs) >= 2 and len(reference.runs) >= 2
        p50, p99, diff = (_between_runs if between else _within_runs)(side, reference)
        runs = (len(side.runs), len(reference.runs))
        basis = f"{runs[0]} vs {runs[1]} runs, between-run" if between else ""
        rates = (_pooled_rate(side), _pooled_rate(reference))
        deltas.append({
            "label": side.label,
            "reference": reference.label,
            "runs": list(runs),
            "between_runs": between,
            "p50_ratio": p50.as_dict(),
            "p99_ratio": p99.as_dict(),
            "loss_rate_difference": diff.as_dict(),
            "sentences": [
                ratio_sentence(side.label, reference.label, "p50", p50, basis),
                ratio_sentence(side.label, reference.label, "p99", p99, basis),
                loss_sentence(side.label, reference.label, rates, diff, basis),
            ],
        })  # fmt: skip
    return deltas


def side_data(measured: Measured) -> SideData:
    """A run's measured deliveries and messages by send time, for blocked comparison.

    Warm-up messages are left out of the loss too, so that every block counts the same
    messages for latency and for loss.
    """
    run, lat = measured.facts.run, measured.facts.latencies
    sent = np.asarray(run.sends["sent_ns"], dtype=np.int64)
    keep = sent >= measured_window_start(run)
    ledger = measured.facts.ledger
    return SideData(
        delivery_sent_ns=sent[lat.message],
        latency_ms=lat.from_sent_ms,
        message_sent_ns=sent[keep],
        lost=lost_per_message_of(ledger)[keep],
        expected=ledger.expected_per_message[keep],
    )


def detectable_difference(diff: Interval) -> float:
    """The smallest true difference seen 80 % of the time, from a 95 % interval's half-width:
    (z₀.₉₇₅ + z₀.₈₀)/z₀.₉₇₅ times it. Blocks that all lost nothing have no spread, so the
    loss interval (widened to the pooled one) gives the scale, not the blocks alone."""
    if not diff.finite:
        return math.nan
    return (diff.high - diff.low) / 2 * (Z95 + Z80) / Z95


def _detectable_points(points: float) -> str:
    if not math.isfinite(points):
        return "the smallest change in loss rate this run could see is unknown"
    return f"this run could have seen a {100 * points:.2f}-point change in loss rate"


def side_by_side(side: Side, reference: Side) -> dict[str, Any]:
    """B (``side``) against A (``reference``), run at once: paired by time block.

    The loss interval is the wider of the paired one and the pooled message-level one:
    blocks that all lost nothing show no spread, which is not certainty.
    """
    (ours,), (theirs,) = side.runs, reference.runs
    ours_data = side_data(ours)
    blocked = compare_blocked(side_data(theirs), ours_data)
    p50, p99, loss = blocked["p50"], blocked["p99"], blocked["loss"]
    pooled = Interval(*bootstrap_difference(*side.losses(), *reference.losses()))
    if loss.finite and pooled.finite:
        diff = Interval(pooled.point, min(loss.low, pooled.low), max(loss.high, pooled.high))
    else:
        diff = pooled
    basis = f"{p50.blocks} blocks of {blocked['block_s']:g} s, side by side"
    rates = (_pooled_rate(side), _pooled_rate(reference))
    sentences = []
    for figure, paired in (("p50", p50), ("p99", p99)):
        ratio = Interval(paired.point, paired.low, paired.high)
        sentence = ratio_sentence(side.label, reference.label, figure, ratio, basis)
        if comparable(ratio):
            sentence += f"; {detectable_words(figure, paired)}"
        sentences.append(sentence)
    loss_detectable = detectable_difference(diff)
    sentences.append(f"{loss_sentence(side.label, reference.label, rates, diff, basis)}; "
                     f"{_detectable_points(loss_detectable)}")  # fmt: skip
    series = blocked["series"]
    return {
        "label": side.label,
        "reference": reference.label,
        "runs": [1, 1],
        "between_runs": False,
        "side_by_side": True,
        "p50_ratio": Interval(p50.point, p50.low, p50.high).as_dict(),
        "p99_ratio": Interval(p99.point, p99.low, p99.high).as_dict(),
        "loss_rate_difference": diff.as_dict(),
        "blocks": {
            "block_s": blocked["block_s"],
            "count": blocked["blocks"],
            "used": {"p50": p50.blocks, "p99": p99.blocks, "loss": loss.blocks},
            "effective": {"p50": p50.effective_blocks, "p99": p99.effective_blocks},
            "detectable": {
                "p50": _finite(p50.detectable),
                "p99": _finite(p99.detectable),
                "loss_points": _finite(100 * loss_detectable),
            },
            "series": {key: [_finite(float(x)) for x in values] for key, values in series.items()},
        },
        "sentences": sentences,
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
