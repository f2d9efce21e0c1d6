"""Worker clocks onto the master's: the two-phase fit, correction at write, the skew hook."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanbench_common.rundir import read_run
from loadtest.clock import CLOCK_SKEW_ENV, NO_SKEW, UNMEASURED, ClockSample, fit, skew_for
from loadtest.recorder import Collector, Recorder
from reports.analysis import validity
from tests.reports.synthetic import build_run

SECOND = 1_000_000_000
MS = 1_000_000


def exchange(master_ns: int, rtt_ns: int, offset_ns: int, skew_of_stamp: int = 0) -> ClockSample:
    """A ping sent at ``master_ns``; the worker stamps its clock at the true midpoint
    (plus ``skew_of_stamp``, an asymmetric path)."""
    midpoint = master_ns + rtt_ns // 2
    return ClockSample(master_ns, master_ns + rtt_ns, midpoint + offset_ns + skew_of_stamp)


def test_the_lowest_round_trip_of_each_phase_anchors_the_line() -> None:
    offset, drift_ppm = 250 * MS, 2000.0

    def true_offset(t: int) -> int:
        return offset + int((t - 10 * SECOND) * drift_ppm * 1e-6)

    start = [
        exchange(t, rtt, true_offset(t + rtt // 2), jitter)
        for t, rtt, jitter in [
            (10 * SECOND, 9 * MS, 4 * MS), (10 * SECOND + 100 * MS, MS // 2, 0),
            (10 * SECOND + 200 * MS, 5 * MS, -2 * MS),
        ]
    ]  # fmt: skip
    stop = [
        exchange(t, rtt, true_offset(t + rtt // 2), jitter)
        for t, rtt, jitter in [(40 * SECOND, 7 * MS, 3 * MS), (40 * SECOND + 100 * MS, MS, 0)]
    ]
    line = fit(start, stop)
    assert line is not None
    assert line.samples == 5
    assert line.uncertainty_ns == MS // 2  # the worse of the two chosen exchanges
    assert abs(line.drift_ppm - drift_ppm) < 1.0
    for t in (10 * SECOND, 25 * SECOND, 40 * SECOND, 50 * SECOND):
        assert abs(int(line.offset_at(t)) - true_offset(t)) <= 1000  # within 1 µs
    # A worker stamp moves back onto the master's clock.
    worker = np.array([30 * SECOND + true_offset(30 * SECOND)], dtype=np.int64)
    assert abs(int(line.to_master(worker)[0]) - 30 * SECOND) <= 1000


def test_one_phase_gives_a_constant_offset_and_none_gives_nothing() -> None:
    only = fit([exchange(SECOND, 2 * MS, -40 * MS)], [])
    assert only is not None
    assert (only.offset_ns, only.drift_ppm, only.uncertainty_ns) == (-40 * MS, 0.0, MS)
    assert fit([], []) is None
    assert UNMEASURED["measured"] is False


def test_offsets_apply_at_write_even_to_batches_shipped_before_any_sample(
    tmp_path: Path,
) -> None:
    """A batch that arrives before the first pong used to stay uncorrected."""
    worker = Recorder(1, NO_SKEW)
    worker.connected(1_000_001, "*", 5 * SECOND + 250 * MS)
    worker.send(1_000_001, 0, 6 * SECOND + 250 * MS, 6 * SECOND + 250 * MS, 64)
    collector = Collector()
    collector.add(worker.take_batch())  # shipped before the master heard any pong
    line = fit([exchange(7 * SECOND, MS, 250 * MS)], [])
    assert line is not None
    meta: dict[str, Any] = {
        "scenario": {}, "target": "ws://127.0.0.1:1/local", "variant": "",
        "times": {"start_ns": 0},
    }  # fmt: skip
    run = read_run(collector.write(tmp_path / "run", meta, {1: line}))
    assert run.sends["sent_ns"].tolist() == [6 * SECOND]
    assert run.membership["connected_ns"].tolist() == [5 * SECOND]


def test_a_process_never_measured_is_flagged(tmp_path: Path) -> None:
    run = read_run(build_run(tmp_path / "run"))
    run.meta["clock_offsets"] = {"0": {**UNMEASURED}, "1": {"measured": True, "uncertainty_ns": 0}}
    assert "clock of process 0 was never measured (offset unknown)" in validity(run)
    assert not any("process 1" in problem for problem in validity(run))


def test_the_skew_hook_applies_to_the_named_process_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CLOCK_SKEW_ENV, "1:250:1000")
    assert skew_for(0) is NO_SKEW
    skew = skew_for(1)
    assert (skew.offset_ns, skew.drift_ppm) == (250 * MS, 1000.0)
    recorder = Recorder(1)
    gap = recorder.now_ns() - time.time_ns()
    assert 249 * MS < gap < 260 * MS
    monkeypatch.delenv(CLOCK_SKEW_ENV)
    assert Recorder(1).now_ns() - time.time_ns() < 10 * MS


@pytest.mark.parametrize("spec", ["1", "x:250", "1:y", "1:250:z"])
def test_a_malformed_skew_says_what_it_expects(spec: str) -> None:
    with pytest.raises(ValueError, match="PROCESS:OFFSET_MS"):
        skew_for(1, spec)
