"""Blocked, paired statistics for two sides measured at once (pure): ``fanbench run --variants``.

Two sides that ran side by side felt the same host noise second by second: a
busy neighbour, a garbage collection in the shared generator, the DynamoDB
emulator stalling. Comparing the sides within short time blocks and pairing the
blocks makes that shared noise cancel: each block gives one log ratio of B's
percentile to A's, and the blocks' mean log ratio carries a paired t interval
(Student, on n − 1 degrees of freedom). Between separate runs the same noise is
in the interval, and it is several times larger (BENCHMARKS.md, "Side by side").

Consecutive blocks can share a slow spell, so their log ratios are not quite
independent: with a positive lag-1 autocorrelation r the blocks count as
n(1 − r)/(1 + r) (the AR(1) effective sample size), never more than n.

The **minimum detectable difference** is the true ratio this run would have
called different 80 % of the time at 95 % confidence, given the noise it saw:
exp((t₀.₉₇₅ + t₀.₈₀) · s/√n) − 1 on the log scale (Cohen, *Statistical Power
Analysis*, 1988, ch. 2; a paired design, so s is the spread of the block ratios).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

CONFIDENCE = 0.95
POWER = 0.80
BLOCK_S = 5.0
"""A block long enough to hold a few hundred deliveries a side at modest rates, short enough
that a 60 s run gives a dozen pairs."""
MIN_BLOCKS = 8
"""Fewer blocks than this and the block is shortened (to 1 s at least): a t interval on three
or four pairs is so wide that it decides nothing."""
MIN_BLOCK_S = 1.0
MIN_DELIVERIES = 20
"""A block whose side measured fewer deliveries has no usable p99 (nearest rank of 20 values
is the maximum) and is left out of every figure."""


@dataclass(frozen=True)
class SideData:
    """One side's measured deliveries and its messages, by send time (epoch ns)."""

    delivery_sent_ns: npt.NDArray[np.int64]
    latency_ms: npt.NDArray[np.float64]
    message_sent_ns: npt.NDArray[np.int64]
    lost: npt.NDArray[np.int64]
    expected: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Paired:
    """A paired estimate: point, 95 % interval, blocks used and the minimum detectable change."""

    point: float
    low: float
    high: float
    blocks: int
    effective_blocks: float
    detectable: float
    """For ratios, the smallest relative change (0.06 = 6 %); for differences, in the unit
    of the figure. NaN when it cannot be estimated."""

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.point, self.low, self.high))


NAN_PAIRED = Paired(math.nan, math.nan, math.nan, 0, 0.0, math.nan)


def block_edges(
    starts: Sequence[int], ends: Sequence[int], block_s: float = BLOCK_S
) -> npt.NDArray[np.int64]:
    """Edges (epoch ns) of blocks over the time both sides were sending.

    Only the overlap counts: a block where one side had not started yet has nothing to pair.
    The block shortens (down to ``MIN_BLOCK_S``) until the overlap holds ``MIN_BLOCKS``.
    """
    first, last = max(starts), min(ends)
    span_s = (last - first) / 1e9
    if span_s <= 0:
        return np.array([], dtype=np.int64)
    # Whole tenths of a second, so that the block length reads plainly in a sentence.
    length_s = max(MIN_BLOCK_S, min(block_s, math.floor(10 * span_s / MIN_BLOCKS) / 10))
    count = max(1, int(span_s // length_s))
    return (first + np.arange(count + 1) * int(length_s * 1e9)).astype(np.int64)


def _t(probability: float, freedom: float) -> float:
    from scipy.stats import t as student_t  # slow to import; only a comparison needs it

    return float(student_t.ppf(probability, freedom))


def lag1_autocorrelation(values: npt.NDArray[np.float64]) -> float:
    """Sample lag-1 autocorrelation (0 for fewer than three values or no spread)."""
    if len(values) < 3:
        return 0.0
    centred = values - values.mean()
    denominator = float(np.sum(centred * centred))
    if denominator == 0:
        return 0.0
    return float(np.sum(centred[1:] * centred[:-1]) / denominator)


def paired_mean(differences: npt.ArrayLike) -> Paired:
    """Mean of paired differences with a t interval and the minimum detectable difference.

    The autocorrelation correction only ever narrows the count of blocks (a negative
    lag-1 correlation is taken as none), so the interval is never narrower than the
    plain paired t interval.
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        return NAN_PAIRED
    r = max(0.0, lag1_autocorrelation(d))
    effective = max(2.0, n * (1 - r) / (1 + r))
    se = float(np.std(d, ddof=1)) / math.sqrt(effective)
    mean = float(d.mean())
    freedom = effective - 1
    half = _t(0.5 + CONFIDENCE / 2, freedom) * se
    detectable = (_t(0.5 + CONFIDENCE / 2, freedom) + _t(POWER, freedom)) * se
    return Paired(mean, mean - half, mean + half, n, effective, detectable)


def paired_ratio(log_ratios: npt.ArrayLike) -> Paired:
    """Geometric-mean ratio (B over A) from per-block log ratios; detectable: a relative change."""
    on_logs = paired_mean(log_ratios)
    if not on_logs.finite:
        return NAN_PAIRED
    return Paired(
        math.exp(on_logs.point), math.exp(on_logs.low), math.exp(on_logs.high),
        on_logs.blocks, on_logs.effective_blocks, math.expm1(on_logs.detectable),
    )  # fmt: skip


def _nearest_rank(values: npt.NDArray[np.float64], percentile: float) -> float:
    return float(np.percentile(values, percentile, method="inverted_cdf"))


def per_block(
    a: SideData, b: SideData, edges: npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[Any]]:
    """Each block's p50, p99 and loss rate on both sides (NaN where a side measured too little)."""
    blocks = max(0, len(edges) - 1)
    out: dict[str, npt.NDArray[Any]] = {
        "start_ns": edges[:-1] if blocks else np.array([], dtype=np.int64)
    }
    for name, side in (("a", a), ("b", b)):
        p50, p99, loss = (np.full(blocks, np.nan) for _ in range(3))
        deliveries = np.zeros(blocks, dtype=np.int64)
        block_of = np.searchsorted(edges, side.delivery_sent_ns, side="right") - 1
        message_block = np.searchsorted(edges, side.message_sent_ns, side="right") - 1
        for i in range(blocks):
            values = side.latency_ms[block_of == i]
            deliveries[i] = len(values)
            if len(values) >= MIN_DELIVERIES:
                p50[i], p99[i] = _nearest_rank(values, 50.0), _nearest_rank(values, 99.0)
            expected = int(side.expected[message_block == i].sum())
            if expected:
                loss[i] = int(side.lost[message_block == i].sum()) / expected
        out |= {f"p50_{name}": p50, f"p99_{name}": p99, f"loss_{name}": loss,
                f"deliveries_{name}": deliveries}  # fmt: skip
    return out


def compare_blocked(a: SideData, b: SideData, block_s: float = BLOCK_S) -> dict[str, Any]:
    """B against A, block by block: p50 and p99 ratios, loss-rate difference, per-block series.

    Returns plain numbers (JSON-ready apart from the arrays under ``series``).
    """
    if len(a.message_sent_ns) and len(b.message_sent_ns):
        edges = block_edges(
            [int(a.message_sent_ns.min()), int(b.message_sent_ns.min())],
            [int(a.message_sent_ns.max()) + 1, int(b.message_sent_ns.max()) + 1],
            block_s,
        )
    else:
        edges = np.array([], dtype=np.int64)
    table = per_block(a, b, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        log50 = np.log(table["p50_b"] / table["p50_a"])
        log99 = np.log(table["p99_b"] / table["p99_a"])
    loss = paired_mean(table["loss_b"] - table["loss_a"])
    length_s = float((edges[1] - edges[0]) / 1e9) if len(edges) > 1 else math.nan
    return {
        "block_s": length_s,
        "blocks": int(max(0, len(edges) - 1)),
        "p50": paired_ratio(log50),
        "p99": paired_ratio(log99),
        "loss": loss,
        "series": {
            "start_s": (table["start_ns"] - (edges[0] if len(edges) else 0)) / 1e9,
            "p50_ratio": np.exp(log50),
            "p99_ratio": np.exp(log99),
            **{k: v for k, v in table.items() if k != "start_ns"},
        },
    }


def detectable_words(figure: str, paired: Paired) -> str:
    """E.g. "this run could have seen a 6.2 % change in p50 (80 % power, 12 blocks of 5 s)"."""
    if not math.isfinite(paired.detectable):
        return f"the smallest change in {figure} this run could see is unknown (too few blocks)"
    return f"this run could have seen a {100 * paired.detectable:.1f} % change in {figure}"
