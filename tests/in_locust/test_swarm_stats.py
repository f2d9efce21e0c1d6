"""A real swarm: Locust's own statistics count every receipt the run directory records.

Fan-out receipts reach Locust's statistics a batch at a time
(``loadtest.receipt_stats``); in one process the fan-out row of Locust's CSV
must count exactly the deliveries the run directory holds, and its percentiles
must be those of the recorded latencies to Locust's bucket precision. (With two
worker processes, each reporting to its master every few seconds, the count is
checked on the distributed run of ``test_ledger_in_locust.py``.)
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from locust.stats import bucket_response_time, calculate_response_time_percentile

from fanbench_common.rundir import read_run
from tests.repo import REPO_ROOT

RUN_TIMEOUT_S = 240


def fanout_row(csv_dir: Path) -> dict[str, str]:
    with (csv_dir / "locust_stats.csv").open(newline="") as stats:
        rows = [row for row in csv.DictReader(stats) if row["Name"] == "fanout"]
    assert len(rows) == 1, rows
    return rows[0]


def test_locust_counts_every_recorded_receipt(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "fanbench", "run", "--users", "8", "--spawn-rate", "20",
        "--duration", "4", "--send-interval", "0.5", "--warmup", "0.5", "--drain", "2",
        "--settle", "0.5", "--no-report", "--quiet",
        "--run-dir", str(run_dir),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run = read_run(run_dir)
    delivered = len(run.deliveries["client"])
    assert delivered > 8 * 4, delivered  # everyone heard several broadcasts
    row = fanout_row(run_dir / "locust")
    assert int(row["Request Count"]) == delivered
    assert int(row["Failure Count"]) == 0
    # One clock: the recorded stamps are the ones Locust's latencies came from.
    assert_percentiles_match(run_dir, row)


def assert_percentiles_match(run_dir: Path, row: dict[str, str]) -> None:
    """Locust's percentiles equal those of the recorded latencies, bucketed as Locust does."""
    run = read_run(run_dir)
    sent = {
        (int(client), int(seq)): int(t_ns)
        for client, seq, t_ns in zip(
            run.sends["client"], run.sends["seq"], run.sends["sent_ns"], strict=True
        )
    }
    buckets = Counter(
        bucket_response_time((int(t_ns) - sent[(int(sender), int(seq))]) / 1e6)
        for sender, seq, t_ns in zip(
            run.deliveries["sender"], run.deliveries["seq"], run.deliveries["received_ns"],
            strict=True,
        )
    )  # fmt: skip
    count = sum(buckets.values())
    for column, percent in (("50%", 0.5), ("95%", 0.95), ("99%", 0.99), ("100%", 1.0)):
        expected = calculate_response_time_percentile(buckets, count, percent)
        assert float(row[column]) == expected, (column, row[column], expected)
