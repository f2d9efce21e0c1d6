"""What ``analysis.analyze`` returns: a run's headline figures as frozen dataclasses.

Readers (the report, the comparison, the threshold gate, ``fanbench run``'s summary, the live
ledger) use attributes, so a misspelt figure is a type error rather than a ``KeyError`` at run
time. ``Summary.to_json()`` is summary.json's ``analyze`` part and each comparison run's
``summary``: its keys, their order and its values are the document's published shape
(``summary_version``), whatever the attribute names here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy.typing as npt

from fanbench_common.loss import LossAccount
from fanbench_common.rundir import ErrorKind
from reports.saturation import Saturation
from reports.stats import percentiles

SUMMARY_VERSION = 1


class _FieldsToJson:
    """``to_json`` for a figure whose document is its fields, in declaration order; a nested
    figure writes its own ``to_json``, a tuple a list."""

    def to_json(self) -> dict[str, Any]:
        return {field.name: _json_value(getattr(self, field.name)) for field in fields(self)}  # type: ignore[arg-type]


def _json_value(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of a set of latencies (ms); ``None`` when it is empty."""

    p50: float | None
    p90: float | None
    p99: float | None
    p99_9: float | None
    max: float | None
    mean: float | None

    @classmethod
    def of(cls, values: npt.NDArray[Any]) -> Percentiles:
        found = percentiles(values)
        return cls(
            p50=found["p50"], p90=found["p90"], p99=found["p99"], p99_9=found["p99.9"],
            max=found["max"], mean=found["mean"],
        )  # fmt: skip

    def named(self, name: str) -> float | None:
        """The figure a document calls ``name`` ("p50", "p99.9", "max"): for code that takes
        the percentile as a parameter (the comparison's p50 and p99 verdicts)."""
        return self.to_json()[name]

    def to_json(self) -> dict[str, float | None]:
        return {
            "p50": self.p50, "p90": self.p90, "p99": self.p99, "p99.9": self.p99_9,
            "max": self.max, "mean": self.mean,
        }  # fmt: skip


@dataclass(frozen=True)
class Latency(_FieldsToJson):
    """Fan-out latency of the measured deliveries (first receipts of expected pairs, warm-up
    excluded), from the actual and from the intended send time."""

    from_sent: Percentiles
    from_intended: Percentiles
    deliveries_measured: int


@dataclass(frozen=True)
class Rate(_FieldsToJson):
    """``count`` of ``trials`` as a fraction, with its 95 % interval."""

    count: int
    rate: float
    ci95: tuple[float, float]


@dataclass(frozen=True)
class LossRate(Rate):
    """The loss rate; its interval is counted over messages (their deliveries are lost
    together), so it says over how many."""

    messages_with_expected_recipients: int


@dataclass(frozen=True)
class Rates(_FieldsToJson):
    loss: LossRate
    duplicates: Rate
    out_of_order: Rate
    late: Rate
    negative_latency: Rate
    error_frames: Rate
    """Of messages sent; the others before it are of receipts."""


@dataclass(frozen=True)
class Throughput(_FieldsToJson):
    sends_per_s: float
    deliveries_per_s: float
    duration_s: float
    """Start of the test to when sending stopped."""


@dataclass(frozen=True)
class Summary:
    """Every headline figure of one run."""

    run: str
    """The run directory's path."""
    variant: str
    target: str
    scenario: Mapping[str, Any]
    """run.json's scenario with its secrets redacted."""
    counts: LossAccount
    latency_ms: Latency
    rates: Rates
    throughput: Throughput
    errors_by_kind: Mapping[str, int]
    """Error records by kind, keyed by ``ErrorKind`` value (a run directory written by a newer
    fanbench may hold kinds this one does not know, and they are counted too)."""
    validity: tuple[str, ...]
    """Reasons the latencies may describe the load generator rather than the system."""
    saturation: Saturation

    def errors_of(self, kind: ErrorKind) -> int:
        return self.errors_by_kind.get(kind, 0)

    def to_json(self) -> dict[str, Any]:
        """The JSON document (summary.json's analysis part), in its published key order."""
        return {
            "summary_version": SUMMARY_VERSION,
            "run": self.run,
            "variant": self.variant,
            "target": self.target,
            "scenario": dict(self.scenario),
            "counts": self.counts.as_dict(),
            "latency_ms": self.latency_ms.to_json(),
            "rates": self.rates.to_json(),
            "throughput": self.throughput.to_json(),
            "errors_by_kind": dict(self.errors_by_kind),
            "validity": list(self.validity),
            "saturation": self.saturation.to_json(),
        }
