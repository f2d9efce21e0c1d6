"""The instrument proves itself on the real local stage (issue 4's calibration).

Each scenario is a real ``fanbench run``: the local stage (gateway, Lambda
workers, moto), a Locust swarm of real WebSocket clients, the run directory.
Faults are injected by the stage with known rates; the loss accounting must
recover them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fanbench_common.rundir import read_run
from reports.analysis import analyze
from reports.stats import wilson_interval

USERS = 10
COMMON = [
    "--users", str(USERS), "--spawn-rate", "10", "--duration", "12", "--send-interval", "1",
    "--warmup", "3", "--drain", "2", "--settle", "1", "--no-report", "--quiet", "--fault-seed", "7",
]  # fmt: skip


def fanbench_run(run_dir: Path, *extra: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "loadtest.cli",
        "run",
        "--run-dir",
        str(run_dir),
        *COMMON,
        *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return analyze(read_run(run_dir))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("calibration")
    scenarios = {
        "clean": [],
        "distributed": ["--workers", "2"],
        "delayed": ["--post-latency-ms", "100"],
        "faulty": ["--drop-rate", "0.05", "--duplicate-rate", "0.05"],
    }
    for name, extra in scenarios.items():
        fanbench_run(root / name, *extra)
    return {name: root / name for name in scenarios}


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
    clean = summary(runs["clean"])["latency_ms"]["from_sent"]["p50"]
    delayed = summary(runs["delayed"])["latency_ms"]["from_sent"]["p50"]
    injected = 100.0
    assert delayed - clean == pytest.approx(injected, abs=2.0 + 0.05 * injected)


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
