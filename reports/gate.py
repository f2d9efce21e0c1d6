"""The threshold gate behind ``fanbench check``: does a run meet its limits? (pure).

``failures(analyze(run), thresholds)`` returns one line per missed limit, naming
the figure, the measured value and the limit, so CI logs say why a build failed.
A limit is met at equality (``p99 <= max_p99_ms`` passes). A run with nothing to
measure fails the limits it cannot show it meets, rather than passing silently, and
a run whose validity banner lists problems fails unless the caller allows it: an
incomplete collection, for one, can hide loss that no threshold would then see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line builds Thresholds without loading numpy
    from reports.summary import Summary


@dataclass(frozen=True)
class Thresholds:
    """Upper limits; ``None`` means "not checked"."""

    max_p50_ms: float | None = None
    max_p99_ms: float | None = None
    max_loss_rate: float | None = None
    """A fraction: 0.01 allows 1 % of expected deliveries to be lost."""
    max_duplicates: int | None = None
    max_error_frames: int | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and (math.isnan(value) or value < 0):
                raise ValueError(f"{_flag(field.name)} must be a number >= 0, got {value}")
        if self.max_loss_rate is not None and self.max_loss_rate > 1:
            raise ValueError(
                f"--max-loss-rate is a fraction (0.01 = 1 %), got {self.max_loss_rate:g}"
            )

    def empty(self) -> bool:
        """True when no limit is set (nothing to check)."""
        return all(getattr(self, field.name) is None for field in fields(self))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _distinct(value: float, limit: float, decimals: int) -> str:
    """``value`` with enough decimals that it never prints equal to a limit it exceeds."""
    for places in range(decimals, 10):
        text = f"{value:.{places}f}"
        if float(text) != limit:
            return text
    return repr(value)


def _latency(summary: Summary, key: str, value: float | None, limit: float | None) -> str | None:
    if limit is None:
        return None
    name = f"{key} fan-out latency"
    if not summary.latency_ms.deliveries_measured or value is None:
        return f"{name} unknown: no deliveries were measured (limit {limit:g} ms)"
    if value > limit:
        return f"{name} {_distinct(value, limit, 1)} ms > {limit:g} ms"
    return None


def _loss(summary: Summary, limit: float | None) -> str | None:
    if limit is None:
        return None
    expected, lost = summary.counts.expected, summary.counts.lost
    if not expected:
        return f"loss rate unknown: no deliveries were expected (limit {limit * 100:g} %)"
    rate = lost / expected
    if rate > limit:
        shown = _distinct(rate * 100, limit * 100, 2)
        return (
            f"loss rate {shown} % > {limit * 100:g} % "
            f"({lost} of {expected} expected deliveries lost)"
        )
    return None


def _count(value: int, name: str, limit: int | None) -> str | None:
    if limit is None:
        return None
    return f"{name} {value} > {limit}" if value > limit else None


def failures(summary: Summary, thresholds: Thresholds, allow_invalid: bool = False) -> list[str]:
    """One line per threshold ``summary`` (from ``analysis.analyze``) misses; empty = pass.

    Each problem of the run's validity banner is a failure too, unless ``allow_invalid``.
    """
    invalid = [] if allow_invalid else [
        f"run is not valid: {problem} (pass --allow-invalid to check it anyway)"
        for problem in summary.validity
    ]  # fmt: skip
    latency, counts = summary.latency_ms.from_sent, summary.counts
    found = [
        _latency(summary, "p50", latency.p50, thresholds.max_p50_ms),
        _latency(summary, "p99", latency.p99, thresholds.max_p99_ms),
        _loss(summary, thresholds.max_loss_rate),
        _count(counts.duplicates, "duplicate receipts", thresholds.max_duplicates),
        _count(counts.error_frames, "error frames", thresholds.max_error_frames),
    ]
    return invalid + [line for line in found if line is not None]
