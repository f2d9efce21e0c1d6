"""The instrument proves itself on the real local stage (issue 4's calibration).

Each scenario is a real ``fanbench run``: the local stage (gateway, Lambda
workers, moto), a Locust swarm of real WebSocket clients, the run directory.
Faults are injected by the stage with known rates; the loss accounting must
recover them.

Runs go in pairs, started together, each against its own stage: an injected
fault is compared with a clean side measured at the same moment, so both see the
same load from whatever else the machine is doing (a clean run made a minute
earlier on a busy machine moved a 100 ms delay to 91.7 ms). The injected delay
is judged second by second: the median latency of the messages each side sent in
the same second, differenced, and the bound comes from how much those paired
differences scatter (docs/measurement.md, "Calibration").
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanbench_common.loss import ledger
from fanbench_common.rundir import Run, read_run
from reports.analysis import analyze, measured_window_start
from reports.stats import wilson_interval

USERS = 10
COMMON = [
    "--users", str(USERS), "--spawn-rate", "10", "--duration", "12", "--send-interval", "1",
    "--warmup", "3", "--drain", "2", "--settle", "1", "--no-report", "--quiet", "--fault-seed", "7",
]  # fmt: skip


INJECTED_MS = 100.0
TIMER_FLOOR_MS = 2.0
"""Added to the noise bound: what no amount of averaging removes (timer and scheduling
granularity on both sides)."""
NOISE_SIGMAS = 4.0
RUN_TIMEOUT_S = 240.0
PAIRS = (("clean", "delayed"), ("faulty", "distributed"))
"""Started together: the delay against its clean side; the other two only share the time."""
SCENARIOS: dict[str, list[str]] = {
    "clean": [],
    "delayed": ["--post-latency-ms", str(INJECTED_MS)],
    "faulty": ["--drop-rate", "0.05", "--duplicate-rate", "0.05"],
    "distributed": ["--workers", "2"],
}


def run_together(root: Path, names: tuple[str, ...]) -> None:
    """``fanbench run`` for each name at once, each with its own stage; all must succeed."""
    started: dict[str, subprocess.Popen[bytes]] = {}
    for name in names:
        command = [sys.executable, "-m", "loadtest.cli", "run", "--run-dir", str(root / name)]
        with (root / f"{name}.out").open("wb") as output:  # a file: no pipe can fill and stall
            started[name] = subprocess.Popen(
                [*command, *COMMON, *SCENARIOS[name]], stdout=output, stderr=subprocess.STDOUT
            )
    failures = []
    for name, process in started.items():
        try:
            process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        if process.returncode != 0:
            printed = (root / f"{name}.out").read_text(errors="replace")
            failures.append(f"{name} exited {process.returncode}: {printed[-2000:]}")
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("calibration")
    for pair in PAIRS:
        run_together(root, pair)
    return {name: root / name for name in SCENARIOS}


def per_second_median_ms(run: Run) -> dict[int, float]:
    """Each measured second's median fan-out latency (first receipts of expected recipients,
    from the send), keyed by the epoch second the messages were sent in."""
    facts = ledger(run.sends, run.deliveries, run.membership, int(run.scenario["settle_s"] * 1e9))
    keep = facts.receipt_expected & facts.receipt_first
    message = facts.receipt_message[keep]
    sent_ns = run.sends["sent_ns"][message]
    measured = sent_ns >= measured_window_start(run)
    latency_ms = (run.deliveries["received_ns"][keep][measured] - sent_ns[measured]) / 1e6
    second = sent_ns[measured] // 1_000_000_000
    return {int(s): float(np.median(latency_ms[second == s])) for s in np.unique(second)}


def paired_shift(
    clean: Mapping[int, float], shifted: Mapping[int, float]
) -> tuple[float, float, int]:
    """(median of the per-second differences, its noise bound, seconds paired). The bound is
    ``NOISE_SIGMAS`` standard errors of that median (the differences' spread, robustly: 1.4826
    MAD, times 1.2533 / sqrt(n) for a median) plus ``TIMER_FLOOR_MS``."""
    seconds = sorted(set(clean) & set(shifted))
    if not seconds:
        return math.nan, math.nan, 0
    differences = np.array([shifted[s] - clean[s] for s in seconds])
    estimate = float(np.median(differences))
    spread = 1.4826 * float(np.median(np.abs(differences - estimate)))
    standard_error = 1.2533 * spread / math.sqrt(len(seconds))
    return estimate, NOISE_SIGMAS * standard_error + TIMER_FLOOR_MS, len(seconds)


def test_the_paired_shift_recovers_a_known_shift_and_widens_with_noise() -> None:
    clean = {s: 20.0 + (s % 3) for s in range(10)}
    shifted = {s: v + 100.0 for s, v in clean.items()} | {99: 1_000.0}  # unpaired: ignored
    assert paired_shift(clean, shifted) == (100.0, TIMER_FLOOR_MS, 10)
    noisy = {s: v + 100.0 + (15.0 if s % 2 else -15.0) for s, v in clean.items()}
    estimate, bound, paired = paired_shift(clean, noisy)
    assert paired == 10
    assert bound > TIMER_FLOOR_MS + 10
    assert abs(estimate - 100.0) <= 15.0
    assert paired_shift(clean, {})[2] == 0


def summary(path: Path) -> dict[str, Any]:
    return analyze(read_run(path))


def test_fault_free_run_loses_nothing(runs: dict[str, Path]) -> None:
    counts = summary(runs["clean"])["counts"]
    assert counts["messages"] >= USERS * 8
    assert counts["expected"] >= counts["messages"] * (USERS - 1) * 0.9
    assert counts["lost"] == 0
    assert counts["duplicates"] == 0
    assert counts["delivered"] == counts["expected"]
    assert counts["negative_latency"] == 0


def test_injected_latency_is_recovered(runs: dict[str, Path]) -> None:
    """The delay against the clean side measured at the same moment, second by second."""
    estimate, bound, paired = paired_shift(
        per_second_median_ms(read_run(runs["clean"])),
        per_second_median_ms(read_run(runs["delayed"])),
    )
    print(f"injected {INJECTED_MS} ms, recovered {estimate:.1f} ± {bound:.1f} ms ({paired} s)")
    assert paired >= 5
    # A bound this wide could not tell the delay from no delay: the run was too noisy to judge.
    assert bound < INJECTED_MS / 4, (estimate, bound)
    assert abs(estimate - INJECTED_MS) <= bound, (estimate, bound, paired)


def test_injected_drop_rate_is_recovered(runs: dict[str, Path]) -> None:
    counts = summary(runs["faulty"])["counts"]
    low, high = wilson_interval(counts["lost"], counts["expected"])
    assert low <= 0.05 <= high, (counts["lost"], counts["expected"])


def test_injected_duplicates_are_counted_exactly(runs: dict[str, Path]) -> None:
    meta = json.loads((runs["faulty"] / "run.json").read_text())
    duplicated_by_stage = meta["stage"]["stats"]["gateway"]["frames_duplicated"]
    assert duplicated_by_stage > 0
    assert summary(runs["faulty"])["counts"]["duplicates"] == duplicated_by_stage


def test_distributed_records_merge_and_match_single_process(runs: dict[str, Path]) -> None:
    meta = json.loads((runs["distributed"] / "run.json").read_text())
    collection = meta["collection"]
    assert collection["complete"]
    assert len(collection["rows_by_process"]) == 2
    for table, total in collection["rows"].items():
        assert total == sum(rows[table] for rows in collection["rows_by_process"].values())
    run = read_run(runs["distributed"])
    assert len(run.sends["client"]) == collection["rows"]["sends"]
    assert len(run.deliveries["client"]) == collection["rows"]["deliveries"]
    distributed, single = summary(runs["distributed"])["counts"], summary(runs["clean"])["counts"]
    for counts in (distributed, single):
        assert counts["lost"] == 0
        assert counts["duplicates"] == 0
        assert counts["delivered"] == counts["expected"] > 0
    # Same scenario, same size: both swarms send about the same number of messages.
    assert distributed["messages"] == pytest.approx(single["messages"], rel=0.15)
