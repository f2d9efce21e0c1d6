"""The instrument proves itself on the real local stage (issue 4's calibration).

Each scenario is a real ``fanbench run``: the local stage (gateway, Lambda
workers, moto), a Locust swarm of real WebSocket clients, the run directory.
Faults are injected by the stage with known rates; the loss accounting must
recover them.

The injected delay is measured against a clean side at the same moment: two
stages side by side (one clean, one delaying every @connections post), real
WebSocket clients on each, sends alternating between them one at a time, each
round's two latencies differenced; the bound comes from how much those paired
differences scatter (docs/measurement.md, "Calibration"). A clean run made a
minute earlier on a busy machine had moved a 100 ms delay to 91.7 ms. The swarms
that the loss tests read run one after another (two at once starved each other on
a loaded 2-core machine: 20 messages sent where 100 were due).
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanbench_common.rundir import read_run
from loadtest.stage.config import StageConfig
from loadtest.stage.faults import Faults
from loadtest.stage.launcher import LocalStage
from reports.analysis import analyze
from reports.stats import median_standard_error, wilson_interval
from reports.summary import Summary
from tests.reliability.support import chat
from tests.stage.support import running_stage
from tests.ws import clients, recv_until

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
ROUNDS, MAX_ROUNDS, WARM_ROUNDS, CLIENTS_PER_SIDE = 16, 64, 2, 4
"""Rounds go on past ``ROUNDS`` (8 at a time, at most ``MAX_ROUNDS``) while the noise bound is
wider than a quarter of the delay: a busier machine is measured longer, not judged looser."""
RUN_TIMEOUT_S = 240.0
SCENARIOS: dict[str, list[str]] = {
    "faulty": ["--drop-rate", "0.05", "--duplicate-rate", "0.05"],
    "distributed": ["--workers", "2"],
}
"""The fault-free run is the distributed one: two Locust workers whose records the master
merges, the harder case of 'loses nothing' (one process is every other swarm's case)."""
Z_999 = 3.2905
"""The drop-rate check's interval: 99.9 %, so the stage's random draws fail it once in 1,000
runs, not once in 20."""


def run_together(root: Path, names: tuple[str, ...]) -> None:
    """``fanbench run`` for each name at once, each with its own stage; all must succeed."""
    started: dict[str, subprocess.Popen[bytes]] = {}
    for name in names:
        command = [sys.executable, "-m", "fanbench", "run", "--run-dir", str(root / name)]
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
    for name in SCENARIOS:
        run_together(root, (name,))
    return {name: root / name for name in SCENARIOS}


def paired_shift(
    clean: Mapping[int, float], shifted: Mapping[int, float]
) -> tuple[float, float, int]:
    """(median of the paired differences, its noise bound, pairs). The bound is
    ``NOISE_SIGMAS`` standard errors of that median (``median_standard_error``) plus
    ``TIMER_FLOOR_MS``."""
    seconds = sorted(set(clean) & set(shifted))
    if not seconds:
        return math.nan, math.nan, 0
    differences = np.array([shifted[s] - clean[s] for s in seconds])
    estimate = float(np.median(differences))
    noise_ms = NOISE_SIGMAS * median_standard_error(differences)
    return estimate, noise_ms + TIMER_FLOOR_MS, len(seconds)


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


def summary(path: Path) -> Summary:
    return analyze(read_run(path))


def test_fault_free_run_loses_nothing(runs: dict[str, Path]) -> None:
    counts = summary(runs["distributed"]).counts
    assert counts.messages >= USERS * 8
    assert counts.expected >= counts.messages * (USERS - 1) * 0.9
    assert counts.lost == 0
    assert counts.duplicates == 0
    assert counts.delivered == counts.expected
    assert counts.negative_latency == 0


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(clean, delayed) stages' WebSocket URLs, running together."""
    root = tmp_path_factory.mktemp("side-by-side")
    delayed = StageConfig(faults=Faults(post_latency_ms=INJECTED_MS))
    with contextlib.ExitStack() as stack:
        stages: list[LocalStage] = [
            stack.enter_context(running_stage(config, root / name))
            for name, config in (("clean", StageConfig()), ("delayed", delayed))
        ]
        yield stages[0].ws_url, stages[1].ws_url


def fanout_ms(side: list[Any], text: str) -> float:
    """Send ``text`` from the side's first client; ms until its first receiver has it (the
    others must get it too, read after)."""
    sender, first, *others = side
    began = time.perf_counter()
    sender.send(chat(text))
    recv_until(first, lambda frame: frame == text)
    took_ms = (time.perf_counter() - began) * 1000
    for receiver in others:
        recv_until(receiver, lambda frame: frame == text)
    return took_ms


def test_injected_latency_is_recovered(side_by_side: tuple[str, str]) -> None:
    """Each round sends once on each stage, one at a time, the order alternating: the two
    latencies of a round saw the same machine, and their difference is the delay."""
    clean_url, delayed_url = side_by_side
    with (
        clients(clean_url, CLIENTS_PER_SIDE) as clean,
        clients(delayed_url, CLIENTS_PER_SIDE) as delayed,
    ):
        for n in range(WARM_ROUNDS):  # the first invocations start execution environments
            fanout_ms(clean, f"warm {n}")
            fanout_ms(delayed, f"warm {n}")
        measured: dict[str, dict[int, float]] = {"clean": {}, "delayed": {}}
        for n in range(MAX_ROUNDS):
            checkpoint = n >= ROUNDS and n % 8 == 0
            bound = paired_shift(measured["clean"], measured["delayed"])[1] if checkpoint else 0
            if checkpoint and bound < INJECTED_MS / 4:
                break
            order = [("clean", clean), ("delayed", delayed)]
            for name, side in order if n % 2 == 0 else order[::-1]:
                measured[name][n] = fanout_ms(side, f"round {n} {name}")
    estimate, bound, paired = paired_shift(measured["clean"], measured["delayed"])
    print(
        f"injected {INJECTED_MS} ms, recovered {estimate:.1f} ± {bound:.1f} ms over {paired}"
        f" rounds; clean median {np.median(list(measured['clean'].values())):.1f} ms"
    )
    assert paired >= ROUNDS
    # Wider, and the bound could not tell the delay from none: too noisy to judge.
    assert bound < INJECTED_MS / 2, (estimate, bound, measured)
    assert abs(estimate - INJECTED_MS) <= bound, (estimate, bound, measured)


def test_injected_drop_rate_is_recovered(runs: dict[str, Path]) -> None:
    counts = summary(runs["faulty"]).counts
    meta = json.loads((runs["faulty"] / "run.json").read_text())
    dropped = meta["stage"]["stats"]["gateway"]["frames_dropped"]
    assert 0 < counts.lost <= dropped
    # The stage drops any post; a drop counts as lost only where the ledger expected that
    # delivery. The rest fell on deliveries it did not expect (a client mid-handshake, more of
    # them on a busy host), so they must be a plausible 5 % of those.
    uncounted = dropped - counts.lost
    if uncounted:
        low, _ = wilson_interval(uncounted, uncounted + counts.unexpected, z=Z_999)
        assert low <= 0.05, (uncounted, counts.unexpected)
    low, high = wilson_interval(counts.lost, counts.expected, z=Z_999)
    assert low <= 0.05 <= high, (counts.lost, counts.expected)


def test_injected_duplicates_are_counted_exactly(runs: dict[str, Path]) -> None:
    meta = json.loads((runs["faulty"] / "run.json").read_text())
    duplicated_by_stage = meta["stage"]["stats"]["gateway"]["frames_duplicated"]
    assert duplicated_by_stage > 0
    assert summary(runs["faulty"]).counts.duplicates == duplicated_by_stage


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
    distributed, single = summary(runs["distributed"]).counts, summary(runs["faulty"]).counts
    assert distributed.lost == 0
    assert distributed.duplicates == 0
    assert distributed.delivered == distributed.expected > 0
    # Same scenario and size (the stage's faults change what arrives, not what is sent): the
    # two workers send about as many messages as one process.
    assert distributed.messages == pytest.approx(single.messages, rel=0.15)
