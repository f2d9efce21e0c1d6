"""Worker clocks onto the master's: NTP-style samples, a two-point fit, a test-only skew (pure).

The master pings each worker at the start of a test and again when sending
stops. In each phase the exchange with the lowest round trip bounds the offset
tightest (its error is at most half that round trip); the line through the two
phases' best exchanges also corrects linear drift. Offsets are applied once,
when the run directory is written, so records shipped before the first sample
are corrected like every other.

``FANBENCH_TEST_CLOCK_SKEW`` (tests only) makes one Locust process's recorder
clock run off the real one, to check the correction end to end:
``PROCESS:OFFSET_MS[:DRIFT_PPM]``, for example ``1:250`` or ``1:250:2000``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

CLOCK_SKEW_ENV = "FANBENCH_TEST_CLOCK_SKEW"
PPM = 1e-6


@dataclass(frozen=True)
class ClockSample:
    """One ping exchange: the master's send and receipt times and the worker's stamp."""

    sent_ns: int
    received_ns: int
    worker_ns: int

    @property
    def midpoint_ns(self) -> int:
        return (self.sent_ns + self.received_ns) // 2

    @property
    def rtt_ns(self) -> int:
        return self.received_ns - self.sent_ns

    @property
    def offset_ns(self) -> int:
        """Worker clock minus master clock, within ± half the round trip."""
        return self.worker_ns - self.midpoint_ns


@dataclass(frozen=True)
class ClockFit:
    """``worker − master = offset_ns + drift_ppm · 1e-6 · (t − anchor_ns)``, t the master's."""

    anchor_ns: int
    offset_ns: int
    drift_ppm: float
    uncertainty_ns: int
    samples: int

    def offset_at(self, master_ns: npt.NDArray[np.int64] | int) -> npt.NDArray[np.int64]:
        elapsed = np.asarray(master_ns, dtype=np.int64) - self.anchor_ns
        drift: npt.NDArray[np.int64] = np.rint(elapsed * (self.drift_ppm * PPM)).astype(np.int64)
        return self.offset_ns + drift

    def to_master(self, worker_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Worker stamps onto the master's clock. The offset depends on the master time being
        solved for, so iterate: each step shrinks the error by the drift (1e-6 per ppm)."""
        master = worker_ns - self.offset_ns
        for _ in range(2):
            master = worker_ns - self.offset_at(master)
        return master

    def as_meta(self) -> dict[str, int | float | bool]:
        return {
            "measured": True,
            "offset_ns": self.offset_ns,
            "anchor_ns": self.anchor_ns,
            "drift_ppm": self.drift_ppm,
            "uncertainty_ns": self.uncertainty_ns,
            "samples": self.samples,
        }


UNMEASURED: dict[str, int | float | bool] = {"measured": False, "samples": 0}
"""run.json's entry for a process whose clock was never sampled (its offset is unknown)."""


def fit(start: Sequence[ClockSample], stop: Sequence[ClockSample]) -> ClockFit | None:
    """The clock line through each phase's best exchange; ``None`` without any sample.

    With samples from one phase only, the offset is constant (no drift estimate).
    """
    phases = [min(samples, key=lambda s: s.rtt_ns) for samples in (start, stop) if samples]
    if not phases:
        return None
    count = len(start) + len(stop)
    first, last = phases[0], phases[-1]
    span = last.midpoint_ns - first.midpoint_ns
    drift_ppm = (last.offset_ns - first.offset_ns) / span / PPM if span > 0 else 0.0
    return ClockFit(
        anchor_ns=first.midpoint_ns,
        offset_ns=first.offset_ns,
        drift_ppm=drift_ppm,
        uncertainty_ns=max(p.rtt_ns for p in phases) // 2,
        samples=count,
    )


@dataclass(frozen=True)
class Skew:
    """A test-only error on one process's clock."""

    offset_ns: int = 0
    drift_ppm: float = 0.0
    origin_ns: int = 0

    def now_ns(self) -> int:
        real = time.time_ns()
        return real + self.offset_ns + int((real - self.origin_ns) * self.drift_ppm * PPM)


NO_SKEW = Skew()


def skew_for(process: int, spec: str | None = None) -> Skew:
    """The skew ``FANBENCH_TEST_CLOCK_SKEW`` (or ``spec``) asks of ``process``, if any."""
    spec = os.environ.get(CLOCK_SKEW_ENV, "") if spec is None else spec
    if not spec:
        return NO_SKEW
    parts = spec.split(":")
    try:
        target, offset_ms = int(parts[0]), float(parts[1])
        drift_ppm = float(parts[2]) if len(parts) > 2 else 0.0
    except (IndexError, ValueError):
        raise ValueError(
            f"{CLOCK_SKEW_ENV}={spec!r}: expected PROCESS:OFFSET_MS[:DRIFT_PPM]"
        ) from None
    if target != process:
        return NO_SKEW
    return Skew(int(offset_ms * 1e6), drift_ppm, time.time_ns())
