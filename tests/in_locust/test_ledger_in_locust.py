"""Loss, duplicates and lateness in Locust's own CSV: ``locust -f <installed locustfile> --csv``.

Against a real local stage that silently drops 2 % of its posts, Locust's
``lost deliveries`` row must count exactly the report's lost and expected
deliveries (so its failure ratio is the report's loss rate) and its failures
file must explain them; without the fault every ledger row shows 0 failures.
The faulty run is one process exporting through ``--otel`` as well; the
fault-free one is distributed (a master and two worker processes), whose fan-out
row must count every receipt the workers recorded.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fanbench import LOCUSTFILE
from fanbench.locust_ledger import DUPLICATE, LATE, LEDGER, LOST
from fanbench_common.rundir import read_run
from loadtest.stage.config import StageConfig
from loadtest.stage.dynamodb import free_port
from loadtest.stage.faults import Faults
from loadtest.stage.launcher import LocalStage
from reports.analysis import analyze
from tests.in_locust.test_swarm_stats import fanout_row
from tests.repo import REPO_ROOT

RUN_TIMEOUT_S = 120
DROP_RATE = 0.02


@pytest.fixture(scope="module", params=[0.0, DROP_RATE], ids=["fault-free", "drop-2pc"])
def stage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStage]:
    # A long function timeout: a cold start on a busy test machine is slow, not a loss.
    config = replace(
        StageConfig(function_timeout_s=30.0), faults=Faults(drop_rate=request.param, seed=7)
    )
    with LocalStage(config, log_dir=tmp_path_factory.mktemp("stage")) as running:
        yield running


OTEL_CONSOLE = {
    "OTEL_METRICS_EXPORTER": "console", "OTEL_TRACES_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none", "OTEL_METRIC_EXPORT_INTERVAL": "1000",
}  # fmt: skip
"""Locust's ``--otel`` with the SDK's console exporter: metrics as JSON on stdout."""


def run_locust(
    stage: LocalStage, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", stage.ws_url, "-u", "12", "-r", "50", "-t", "8s", "--stop-timeout", "5",
        "--csv", str(out / "locust"), "--only-summary", "--loglevel", "WARNING",
        "--run-dir", str(out / "run"), "--send-interval", "0.25", "--warmup", "0.5",
        "--drain", "1", "--settle", "0.5", "--drain-limit", "10", *extra,
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        env={**os.environ, "MPLBACKEND": "Agg", **(env or {})},
    )  # fmt: skip


def last_exported(stdout: str, metric: str) -> int:
    """The value of ``metric`` in the console exporter's last export."""
    values = re.findall(
        rf'"name": "{re.escape(metric)}",.*?"value": (-?\d+)', stdout, flags=re.DOTALL
    )
    assert values, stdout[-3000:]
    return int(values[-1])


def ledger_rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "locust_stats.csv").open(newline="") as stats:
        return {row["Name"]: row for row in csv.DictReader(stats) if row["Type"] == LEDGER}


def failures(out: Path) -> dict[str, tuple[str, int]]:
    with (out / "locust_failures.csv").open(newline="") as file:
        return {
            row["Name"]: (row["Error"], int(row["Occurrences"]))
            for row in csv.DictReader(file)
            if row["Method"] == LEDGER
        }


def test_locust_csv_carries_the_reports_loss(stage: LocalStage, tmp_path: Path) -> None:
    faulty = stage.config.faults.drop_rate > 0
    if faulty:
        # In one process, exporting through --otel too (fan-out receipts then take Locust's
        # request event one by one, the other path to its statistics).
        result = run_locust(stage, tmp_path, "--otel", env=OTEL_CONSOLE)
    else:  # distributed: the master's statistics carry the rows
        port = str(free_port("127.0.0.1"))
        result = run_locust(
            stage, tmp_path, "--processes", "2", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", port, "--master-port", port,
        )  # fmt: skip
    assert (tmp_path / "run" / "run.json").is_file(), result.stdout[-2000:] + result.stderr[-3000:]
    counts = analyze(read_run(tmp_path / "run")).counts
    # Enough deliveries for a 2 % loss to show (a busy machine connects slowly).
    assert counts.expected > (600 if faulty else 100), counts
    rows = ledger_rows(tmp_path)
    lost = rows[LOST]
    assert int(lost["Request Count"]) == counts.expected
    assert int(lost["Failure Count"]) == counts.lost
    assert int(rows[DUPLICATE]["Request Count"]) == counts.receipts
    assert int(rows[DUPLICATE]["Failure Count"]) == counts.duplicates
    assert int(rows[LATE]["Failure Count"]) == counts.late
    explained = failures(tmp_path)
    if faulty:
        # The stage drops about 2 % of posts; the report sees it, and so does Locust.
        assert 0.005 < counts.loss_rate < 0.05, counts
        error, occurrences = explained[LOST]
        assert occurrences == counts.lost
        assert error == "lost: never received (counted once its 1 s drain window passed)"
        aggregated = _aggregated(tmp_path)
        assert int(aggregated["Failure Count"]) >= counts.lost
        assert last_exported(result.stdout, "fanbench.deliveries.lost") == counts.lost
        assert last_exported(result.stdout, "fanbench.deliveries.expected") == counts.expected
    else:
        assert counts.lost == 0, counts
        assert int(lost["Failure Count"]) == 0
        assert LOST not in explained
        # Each worker's fan-out receipts, batched and reported to the master, all counted.
        fanout = fanout_row(tmp_path)
        assert int(fanout["Request Count"]) == len(read_run(tmp_path / "run").deliveries["client"])
        assert int(fanout["Failure Count"]) == 0


def _aggregated(out: Path) -> dict[str, str]:
    with (out / "locust_stats.csv").open(newline="") as stats:
        (row,) = [row for row in csv.DictReader(stats) if row["Name"] == "Aggregated"]
    return row
