"""The master's running ledger: what Locust's own statistics and web UI show while a test runs.

Built from the records the master holds so far with the report's own code
(``reports.analysis``: the same ledger, latencies, per-second bins and
saturation reasons), so live figures and the report's differ only where they
must:

* a delivery counts as **lost** only once its message's drain window (and the
  settle window, and two shipping intervals for records still on their way
  from workers) has passed without it: a slow fan-out is late, not lost. A
  late receipt turns a counted loss back into a delivery, so the live lost
  count can go down;
* **late** receipts exist only once the drain deadline (sending stopped plus
  the drain window) is known, as in the report.

When the run directory is written, ``final_figures`` reads it back and takes the
report's figures as they are (the report remains the reference).

The load generator hands the master's records over as a ``Run``
(``loadtest/live_records.py``); ``locust_ledger`` plugs this ledger into the master.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fanbench_common.rundir import Run
from reports import saturation
from reports.analysis import analyze, gather, lost_per_message_of, per_second

PER_SECOND_ROWS = 300
"""The web UI's fan-out table keeps the newest seconds only (a long test would swamp it)."""


@dataclass(frozen=True)
class LiveFigures:
    """Counts as the report defines them, so far, and the fan-out tab's rows."""

    expected: int
    """Expected deliveries of the messages whose drain window has passed."""
    expected_sent: int
    """Expected deliveries of every message sent so far."""
    lost: int
    receipts: int
    duplicates: int
    late: int
    saturation: str
    per_second: list[dict[str, Any]] = field(default_factory=list)
    """Oldest first: second, expected, delivered, lost (so far), p50_ms, p99_ms."""
    final: bool = False
    p50_ms: float | None = None
    p99_ms: float | None = None
    """Fan-out latency of the whole test so far (the report's measured deliveries)."""

    @property
    def loss_rate(self) -> float:
        return self.lost / self.expected if self.expected else 0.0


def _rows(seconds: dict[str, Any], lost_per_second: np.ndarray[Any, Any]) -> list[dict[str, Any]]:
    def ms(value: float) -> float | None:
        return None if math.isnan(value) else round(float(value), 1)

    expected = seconds["expected"]
    lost_so_far = np.cumsum(lost_per_second)
    first = max(0, len(seconds["second"]) - PER_SECOND_ROWS)
    return [
        {
            "second": int(seconds["second"][s]),
            "expected": int(expected[s]),
            "delivered": int(seconds["deliveries"][s]),
            "lost": int(lost_so_far[s]),
            "p50_ms": ms(seconds["p50_ms"][s]),
            "p99_ms": ms(seconds["p99_ms"][s]),
        }
        for s in range(first, len(seconds["second"]))
    ]


def _expected_per_second(run: Run, expected_per_message: Any, bins: Any) -> Any:
    start = int(run.meta["times"]["start_ns"])
    return np.histogram(
        (run.sends["sent_ns"] - start) / 1e9, bins=bins, weights=expected_per_message
    )[0].astype(np.int64)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def live_figures(run: Run, horizon_ns: int) -> LiveFigures:
    """The figures so far; only messages sent before ``horizon_ns`` can have lost deliveries."""
    facts = gather(run)
    summary = analyze(facts)
    settled = run.sends["sent_ns"] < horizon_ns
    lost_per_message = np.where(settled, lost_per_message_of(facts.ledger), 0)
    seconds = per_second(facts)
    bins = np.append(seconds["second"], len(seconds["second"]))
    seconds["expected"] = _expected_per_second(run, facts.ledger.expected_per_message, bins)
    start = int(run.meta["times"]["start_ns"])
    lost_per_second = np.histogram(
        (run.sends["sent_ns"] - start) / 1e9, bins=bins, weights=lost_per_message
    )[0].astype(np.int64)
    return LiveFigures(
        expected=int(facts.ledger.expected_per_message[settled].sum()),
        expected_sent=int(facts.ledger.expected_per_message.sum()),
        lost=int(lost_per_message.sum()),
        receipts=summary.counts.receipts,
        duplicates=summary.counts.duplicates,
        late=summary.counts.late,
        saturation=saturation.describe(summary.saturation),
        per_second=_rows(seconds, lost_per_second),
        p50_ms=_rounded(summary.latency_ms.from_sent.p50),
        p99_ms=_rounded(summary.latency_ms.from_sent.p99),
    )


def final_figures(run: Run) -> LiveFigures:
    """The report's own figures for a written run directory."""
    facts = gather(run)
    summary = analyze(facts)
    counts = summary.counts
    seconds = per_second(facts)
    bins = np.append(seconds["second"], len(seconds["second"]))
    seconds["expected"] = _expected_per_second(run, facts.ledger.expected_per_message, bins)
    return LiveFigures(
        expected=counts.expected,
        expected_sent=counts.expected,
        lost=counts.lost,
        receipts=counts.receipts,
        duplicates=counts.duplicates,
        late=counts.late,
        saturation=saturation.describe(summary.saturation),
        per_second=_rows(seconds, seconds["lost"]),
        final=True,
        p50_ms=_rounded(summary.latency_ms.from_sent.p50),
        p99_ms=_rounded(summary.latency_ms.from_sent.p99),
    )
