"""Which side limited a run: the system under test, the load generator, both or neither (pure).

The generator's side comes from its own health samples (``analysis``'s
thresholds). The system's side comes from two sources:

* the local stage's own statistics, when the run used it (``run.json``'s
  ``stage.stats.lambda``): invocations throttled, queued for a long time,
  timed out at the function or the 29 s integration limit, every execution
  environment busy at once. Keys added by newer stages are read with defaults,
  so older run directories still assess;
* what the clients saw, on any target: error frames, refused connects, receipts
  after the drain window (fan-outs outlasting the sends), and the median
  latency rising second by second while the send rate stayed flat (a queue
  building up).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

QUEUE_WAIT_P99_MS = 100.0
"""An invocation that waited this long for an execution environment was queued, not served."""
P50_RISE_FACTOR = 2.0
P50_RISE_MIN_MS = 20.0
"""The median must at least double, and by this much, from the first to the last third."""
MIN_SECONDS_FOR_TREND = 6

SYSTEM, GENERATOR, BOTH, NEITHER = "system under test", "load generator", "both", "neither"


def _total(value: Any) -> int:
    if isinstance(value, Mapping):
        return int(sum(value.values()))
    return int(value or 0)


def stage_reasons(stage: Mapping[str, Any], corroborated: bool = False) -> list[str]:
    """What a local stage's statistics say about its own saturation (empty for a remote one).

    Every environment busy at once is only reported beside other evidence (``corroborated``:
    the clients saw trouble): a burst of connects reaches it in a healthy run.
    """
    stats = (stage.get("stats") or {}).get("lambda") or {}
    if stage.get("kind") != "local" or not stats:
        return []
    reasons = []
    throttled = _total(stats.get("throttled", 0))
    if throttled:
        reasons.append(f"{throttled:,} Lambda invocations throttled at the concurrency limit")
    wait_p99 = float(stats.get("queue_wait_ms_p99") or 0.0)
    if wait_p99 > QUEUE_WAIT_P99_MS:
        reasons.append(
            f"invocations queued for an execution environment: up to"
            f" {int(stats.get('peak_queued', 0)):,} waiting, p99 wait {wait_p99:,.0f} ms,"
            f" longest {float(stats.get('queue_wait_ms_max') or 0.0) / 1000:,.1f} s"
        )
    gateway = (stage.get("stats") or {}).get("gateway") or {}
    integration = max(
        _total(stats.get("integration_timeouts", 0)), _total(gateway.get("integration_timeouts", 0))
    )
    if integration:
        reasons.append(f"{integration:,} integration timeouts (29 s limit)")
    timeouts = _total(stats.get("timeouts", {}))
    if timeouts:
        reasons.append(f"{timeouts:,} Lambda invocations timed out")
    limit = stats.get("concurrency_limit") or (stage.get("config") or {}).get("concurrency")
    peak = int(stats.get("peak_running", 0))
    if (reasons or corroborated) and limit and peak >= int(limit):
        reasons.append(f"all {int(limit)} Lambda execution environments busy at once")
    return reasons


def p50_trend(
    sent_s: npt.NDArray[np.float64], latency_ms: npt.NDArray[np.float64]
) -> tuple[float, float] | None:
    """Median latency of the first and the last third of the sending seconds (by send time);
    ``None`` when the window is too short to tell a trend."""
    if not len(sent_s):
        return None
    seconds = np.floor(sent_s - sent_s.min()).astype(np.int64)
    span = int(seconds.max()) + 1
    if span < MIN_SECONDS_FOR_TREND:
        return None
    third = span // 3
    first = latency_ms[seconds < third]
    last = latency_ms[seconds >= span - third]
    if not len(first) or not len(last):
        return None
    return float(np.median(first)), float(np.median(last))


def client_reasons(
    counts: Mapping[str, Any],
    connect_failures: int,
    trend: tuple[float, float] | None,
) -> list[str]:
    """What the clients saw, on any target."""
    reasons = []
    if counts.get("error_frames"):
        reasons.append(f"{counts['error_frames']:,} error frames")
    if connect_failures:
        reasons.append(f"{connect_failures:,} connects refused or timed out")
    if counts.get("late"):
        reasons.append(f"{counts['late']:,} receipts after the drain window")
    if trend is not None:
        first, last = trend
        if last >= P50_RISE_FACTOR * first and last - first >= P50_RISE_MIN_MS:
            reasons.append(f"p50 rose from {first:,.0f} ms to {last:,.0f} ms during sending")
    return reasons


@dataclass(frozen=True)
class Saturation:
    """Which side limited the run (``SYSTEM``, ``GENERATOR``, ``BOTH`` or ``NEITHER``), and
    the reasons seen on each side."""

    limited_by: str
    system: tuple[str, ...]
    generator: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "limited_by": self.limited_by,
            "system": list(self.system),
            "generator": list(self.generator),
        }


def verdict(system: Sequence[str], generator: Sequence[str]) -> Saturation:
    """``limited_by`` and the reasons on each side."""
    limited_by = {
        (True, True): BOTH, (True, False): SYSTEM, (False, True): GENERATOR,
        (False, False): NEITHER,
    }[(bool(system), bool(generator))]  # fmt: skip
    return Saturation(limited_by, tuple(system), tuple(generator))


def describe(saturation: Saturation) -> str:
    """One line for the CLI summary and the report."""
    limited_by = saturation.limited_by
    if limited_by == NEITHER:
        return "saturation: neither side (no sign of a limit in the stage or the generator)"
    parts = []
    if saturation.system:
        parts.append("system under test: " + "; ".join(saturation.system))
    if saturation.generator:
        parts.append("load generator: " + "; ".join(saturation.generator))
    who = "both sides" if limited_by == BOTH else f"the {limited_by}"
    return f"saturation: {who} limited the run ({' | '.join(parts)})"
