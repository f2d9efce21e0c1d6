"""Which side limited a run (issue 11, item 2): the stage's statistics, the clients' view,
the generator's health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanbench_common.rundir import read_run
from reports import saturation
from reports.analysis import analyze, validity
from tests.reports.synthetic import build_run

NEWER_STAGE: dict[str, Any] = {
    "kind": "local",
    "config": {"concurrency": 8},
    "stats": {
        "lambda": {
            "throttled": 629, "peak_queued": 40, "queue_wait_ms_p99": 9_000.0,
            "queue_wait_ms_max": 14_000.0, "integration_timeouts": 3,
            "timeouts": {"SendMessageFunction": 2}, "peak_running": 8, "concurrency_limit": 8,
        }
    },
}  # fmt: skip


def test_a_newer_stage_names_every_limit_it_hit() -> None:
    reasons = saturation.stage_reasons(NEWER_STAGE)
    assert reasons == [
        "629 Lambda invocations throttled at the concurrency limit",
        "invocations queued for an execution environment: up to 40 waiting, p99 wait 9,000 ms,"
        " longest 14.0 s",
        "3 integration timeouts (29 s limit)",
        "2 Lambda invocations timed out",
        "all 8 Lambda execution environments busy at once",
    ]


def test_an_older_stage_without_the_new_keys_still_assesses() -> None:
    older = {"kind": "local", "config": {"concurrency": 8},
             "stats": {"lambda": {"timeouts": {}, "peak_running": 8}}}  # fmt: skip
    assert saturation.stage_reasons(older) == []  # a busy moment alone is no verdict
    assert saturation.stage_reasons(older, corroborated=True) == [
        "all 8 Lambda execution environments busy at once"
    ]
    assert saturation.stage_reasons({"kind": "remote"}) == []
    assert saturation.stage_reasons({}) == []


def test_short_queue_waits_are_not_saturation() -> None:
    stage = {"kind": "local", "stats": {"lambda": {"queue_wait_ms_p99": 40.0, "peak_queued": 2}}}
    assert saturation.stage_reasons(stage) == []


def test_the_median_rising_through_the_run_is_a_queue_building() -> None:
    sent_s = np.repeat(np.arange(12, dtype=np.float64), 10)
    rising = 20.0 + 30.0 * sent_s
    assert saturation.p50_trend(sent_s, rising) == (65.0, 305.0)  # seconds 0-3 and 8-11
    flat = np.full(len(sent_s), 25.0)
    assert saturation.p50_trend(sent_s, flat) == (25.0, 25.0)
    assert saturation.p50_trend(sent_s[:30], rising[:30]) is None  # 3 s: too short to tell
    counts = {"error_frames": 0, "late": 0}
    assert saturation.client_reasons(counts, 0, (50.0, 320.0)) == [
        "p50 rose from 50 ms to 320 ms during sending"
    ]
    assert saturation.client_reasons(counts, 0, (25.0, 40.0)) == []  # under the 20 ms floor
    assert saturation.client_reasons(counts, 0, (25.0, 30.0)) == []


@pytest.mark.parametrize(
    "trend",
    [(5.0, 11.0), (100.0, 125.0)],
    ids=["doubled-by-only-6-ms", "rose-25-ms-but-not-doubled"],
)
def test_the_median_rising_needs_both_a_doubling_and_the_floor(
    trend: tuple[float, float],
) -> None:
    """Either condition alone would blame the system for noise (5 → 11 ms) or a mild drift."""
    assert saturation.client_reasons({"error_frames": 0, "late": 0}, 0, trend) == []


def test_what_clients_saw_counts_on_any_target() -> None:
    counts = {"error_frames": 12, "late": 15_298}
    assert saturation.client_reasons(counts, 3, None) == [
        "12 error frames",
        "3 connects refused or timed out",
        "15,298 receipts after the drain window",
    ]


@pytest.mark.parametrize(
    ("system", "generator", "limited_by", "line"),
    [
        ([], [], "neither", "saturation: neither side (no sign of a limit in the stage or the "
                            "generator)"),
        (["3 integration timeouts"], [], "system under test",
         "saturation: the system under test limited the run (system under test: 3 integration"
         " timeouts)"),
        ([], ["load generator CPU reached 97 %"], "load generator",
         "saturation: the load generator limited the run (load generator: load generator CPU"
         " reached 97 %)"),
        (["12 error frames"], ["send lag p99 reached 80 ms"], "both",
         "saturation: both sides limited the run (system under test: 12 error frames | load"
         " generator: send lag p99 reached 80 ms)"),
    ],
)  # fmt: skip
def test_the_verdict_names_the_side(
    system: list[str], generator: list[str], limited_by: str, line: str
) -> None:
    assessed = saturation.verdict(system, generator)
    assert assessed == saturation.Saturation(limited_by, tuple(system), tuple(generator))
    assert assessed.to_json() == {
        "limited_by": limited_by,
        "system": system,
        "generator": generator,
    }
    assert saturation.describe(assessed) == line


def test_analyze_blames_the_stage_not_a_healthy_generator(tmp_path: Path) -> None:
    """The issue's run: a stage at its limit, a generator at 18 % CPU."""
    path = build_run(tmp_path / "run", health_cpu=18.0)
    run = read_run(path)
    run.meta["stage"] = NEWER_STAGE
    assessed = analyze(run).saturation
    assert assessed.limited_by == "system under test"
    assert assessed.generator == ()
    healthy = analyze(read_run(path)).saturation
    assert healthy.limited_by == "neither"
    busy = analyze(read_run(build_run(tmp_path / "busy", health_cpu=97.0))).saturation
    assert busy == saturation.Saturation(
        limited_by="load generator", system=(), generator=("load generator CPU reached 97 %",)
    )


def test_integration_timeouts_the_gateway_counted_are_read_too() -> None:
    stage = {"kind": "local", "config": {"concurrency": 8},
             "stats": {"gateway": {"integration_timeouts": 404},
                       "lambda": {"timeouts": {}, "peak_running": 8}}}  # fmt: skip
    assert saturation.stage_reasons(stage) == [
        "404 integration timeouts (29 s limit)",
        "all 8 Lambda execution environments busy at once",
    ]


def test_collection_cut_off_at_the_drain_limit_is_a_validity_problem(tmp_path: Path) -> None:
    run = read_run(build_run(tmp_path / "run"))
    run.meta["drain"] = {"settled": False, "limit_s": 58.0, "quiet_s": 2.0}
    assert (
        "receipts were still arriving when collection stopped at the drain limit (58 s after"
        " sending stopped): some of the lost may have been in flight (raise --drain-limit)"
    ) in validity(run)
    run.meta["drain"]["settled"] = True
    assert not any("drain limit" in problem for problem in validity(run))
