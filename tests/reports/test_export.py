"""``fanbench export``: delivery rows (CSV, Parquet) and HdrHistogram interval logs.

The rows are read back with the csv module and pyarrow, the logs with hdrh's own
``HistogramLogReader``; every count is held to the run's own loss account and
every percentile to the run's own analysis. One real swarm checks it end to end.
"""

from __future__ import annotations

import csv
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from fanbench.cli import main
from fanbench_common import loss
from fanbench_common.loss import Ledger
from fanbench_common.rundir import Run, read_run, write_run
from reports import export
from reports.analysis import analyze
from reports.commands import EXPORT_FORMATS
from tests.reports.synthetic import SECOND, START_NS, build_run

PERCENTILES = (50.0, 90.0, 99.0)


def rows_of(run: Run) -> pa.Table:
    return pa.concat_tables(list(export.delivery_tables(run)))


def outcomes(table: pa.Table) -> Counter[str]:
    return Counter(table.column("outcome").to_pylist())


def assert_matches_account(table: pa.Table, run: Run) -> None:
    counts = analyze(run).counts
    seen = outcomes(table)
    assert seen[export.DELIVERED] + seen[export.LATE] == counts.delivered
    assert seen[export.LOST] == counts.lost
    assert seen[export.DUPLICATE] == counts.duplicates
    assert seen[export.UNEXPECTED] == counts.unexpected
    expected_pairs = seen[export.DELIVERED] + seen[export.LATE] + seen[export.LOST]
    assert expected_pairs == counts.expected
    received = np.array(table.column("received_ns").drop_null().to_pylist(), dtype=np.int64)
    deadline = run.meta["times"]["drain_deadline_ns"]
    assert int(np.sum(received > deadline)) == counts.late
    assert len(received) == counts.receipts


def rewrite(run: Run, **tables: dict[str, Any]) -> Run:
    """The same run with some tables replaced."""
    meta = {k: v for k, v in run.meta.items() if k != "schema_version"}
    current = {
        "sends": run.sends,
        "deliveries": run.deliveries,
        "membership": run.membership,
        "errors": run.errors,
        "health": run.health,
    }
    write_run(run.path, meta, {**current, **tables})
    return read_run(run.path)


# ------------------------------------------------------------------------- rows


def test_each_outcome_is_a_row_and_the_counts_are_the_loss_account(tmp_path: Path) -> None:
    late = (3, 4, 1)

    def latency(sender: int, seq: int, receiver: int) -> float:
        return 20_000.0 if (sender, seq, receiver) == late else 10.0 + sender + receiver

    run = read_run(
        build_run(
            tmp_path / "run", clients=4, messages_per_sender=5, latency_ms=latency,
            drop=[(0, 1, 2), (2, 3, 0)], duplicate=[(1, 2, 3)],
        )
    )  # fmt: skip
    table = rows_of(run)
    assert outcomes(table) == {"delivered": 57, "late": 1, "lost": 2, "duplicate": 1}
    assert_matches_account(table, run)
    rows = table.to_pylist()
    lost = sorted((r["sender"], r["seq"], r["recipient"]) for r in rows if r["outcome"] == "lost")
    assert lost == [(0, 1, 2), (2, 3, 0)]
    for row in rows:
        if row["outcome"] == "lost":
            assert (row["received_ns"], row["latency_ms"]) == (None, None)
            assert row["sent_ns"] is not None
        else:
            expected = (row["received_ns"] - row["sent_ns"]) / 1e6
            assert row["latency_ms"] == pytest.approx(expected)
    (late_row,) = [r for r in rows if r["outcome"] == "late"]
    assert (late_row["sender"], late_row["seq"], late_row["recipient"]) == late
    (duplicate,) = [r for r in rows if r["outcome"] == "duplicate"]
    assert (duplicate["sender"], duplicate["seq"], duplicate["recipient"]) == (1, 2, 3)
    assert {r["audience"] for r in rows} == {"*"}


def test_membership_decides_what_was_expected(tmp_path: Path) -> None:
    """A late joiner's early receipts and cross-room receipts are unexpected, not delivered."""
    run = read_run(build_run(tmp_path / "run", clients=5, messages_per_sender=4))
    joins_late = run.membership["connected_ns"].copy()
    joins_late[4] = START_NS + 2 * SECOND + SECOND // 2  # after the sends of seq 0 and 1
    run = rewrite(
        run,
        membership={
            **run.membership,
            "audience": np.array(["room-a", "room-a", "room-a", "room-b", "room-b"]),
            "connected_ns": joins_late,
        },
    )
    table = rows_of(run)
    assert_matches_account(table, run)
    rows = table.to_pylist()
    unexpected = {
        (r["sender"], r["seq"], r["recipient"]) for r in rows if r["outcome"] == "unexpected"
    }
    # Receiver 4's first two messages from 3 (not yet joined) and every cross-room pair.
    assert {(3, 0, 4), (3, 1, 4), (0, 0, 3), (3, 0, 0)} <= unexpected
    assert (3, 2, 4) not in unexpected
    delivered = {
        (r["sender"], r["seq"], r["recipient"]) for r in rows if r["outcome"] == "delivered"
    }
    assert all({s, r} <= {0, 1, 2} or {s, r} <= {3, 4} for s, _, r in delivered)
    assert {r["audience"] for r in rows if r["sender"] == 4} == {"room-b"}


def test_a_receipt_of_an_unknown_message_is_an_unexpected_row_with_no_send(tmp_path: Path) -> None:
    run = read_run(build_run(tmp_path / "run", clients=3, messages_per_sender=2))
    deliveries = {
        column: np.append(values, value)
        for (column, values), value in zip(
            run.deliveries.items(), (1, 0, 99, START_NS + SECOND), strict=True
        )
    }
    run = rewrite(run, deliveries=deliveries)
    table = rows_of(run)
    assert_matches_account(table, run)
    (orphan,) = [r for r in table.to_pylist() if r["seq"] == 99]
    assert orphan["outcome"] == "unexpected"
    assert (orphan["sent_ns"], orphan["intended_ns"], orphan["measured"]) == (None, None, None)
    assert orphan["received_ns"] == START_NS + SECOND


def test_small_batches_give_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = read_run(
        build_run(tmp_path / "run", clients=5, messages_per_sender=6,
                  drop=[(1, 1, 0), (4, 5, 3)], duplicate=[(0, 0, 1)])
    )  # fmt: skip
    whole = rows_of(run)
    monkeypatch.setattr(export, "PAIR_CELLS_PER_BATCH", 7)
    batches = list(export.delivery_tables(run))
    assert len(batches) > 5
    assert sorted(pa.concat_tables(batches).to_pylist(), key=str) == sorted(
        whole.to_pylist(), key=str
    )


def test_pairs_that_disagree_with_the_ledger_stop_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = read_run(build_run(tmp_path / "run", clients=3, messages_per_sender=2))
    real_ledger = loss.ledger

    def one_more_expected(*args: Any) -> Ledger:
        facts = real_ledger(*args)
        expected = facts.expected_per_message.copy()
        expected[-1] += 1
        return Ledger(expected, *(getattr(facts, f) for f in list(facts.__dataclass_fields__)[1:]))

    monkeypatch.setattr(export, "ledger", one_more_expected)
    with pytest.raises(export.LedgerMismatchError, match="disagree with the loss ledger"):
        rows_of(run)


def test_warmup_messages_are_rows_marked_unmeasured(tmp_path: Path) -> None:
    run = read_run(build_run(tmp_path / "run", clients=3, messages_per_sender=4, warmup_s=2.5))
    rows = rows_of(run).to_pylist()
    assert {r["seq"] for r in rows if not r["measured"]} == {0, 1}
    assert {r["seq"] for r in rows if r["measured"]} == {2, 3}


# ------------------------------------------------------------------- files and CLI


def test_csv_and_parquet_hold_the_same_rows(tmp_path: Path) -> None:
    run = read_run(
        build_run(tmp_path / "run", clients=4, messages_per_sender=3, drop=[(0, 0, 1)],
                  duplicate=[(2, 1, 3)], warmup_s=1.5)
    )  # fmt: skip
    csv_file = export.export_run(run, "csv")
    parquet_file = export.export_run(run, "parquet", tmp_path / "elsewhere.parquet")
    assert csv_file == run.path / "export" / "deliveries.csv"
    parquet = pq.read_table(parquet_file)
    assert parquet.schema == export.SCHEMA
    with csv_file.open(newline="") as stream:
        from_csv = list(csv.DictReader(stream))
    assert list(from_csv[0]) == export.SCHEMA.names
    assert len(from_csv) == parquet.num_rows == 4 * 3 * 3 + 1

    def as_text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        return str(value) if not isinstance(value, float) else f"{value:g}"

    for text_row, typed_row in zip(from_csv, parquet.to_pylist(), strict=True):
        for column, value in typed_row.items():
            if isinstance(value, float):
                assert float(text_row[column]) == pytest.approx(value)
            else:
                assert text_row[column] == as_text(value), column
    lost = [r for r in from_csv if r["outcome"] == "lost"]
    assert [(r["sender"], r["seq"], r["recipient"], r["received_ns"]) for r in lost] == [
        ("0", "0", "1", "")
    ]


def test_pandas_reads_both_files_as_the_same_frame(tmp_path: Path) -> None:
    import pandas as pd

    run = read_run(build_run(tmp_path / "run", clients=4, messages_per_sender=3, drop=[(0, 0, 1)]))
    from_parquet = pd.read_parquet(export.export_run(run, "parquet"))
    from_csv = pd.read_csv(export.export_run(run, "csv"))
    assert list(from_parquet.columns) == list(from_csv.columns) == export.SCHEMA.names
    assert len(from_parquet) == len(from_csv) == 36
    assert from_parquet["outcome"].value_counts().to_dict() == {"delivered": 35, "lost": 1}
    pd.testing.assert_frame_equal(from_parquet, from_csv, check_dtype=False)
    lost = from_parquet[from_parquet["outcome"] == "lost"]
    assert lost["received_ns"].isna().all()
    assert lost["sent_ns"].notna().all()


def test_the_cli_writes_every_format_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = build_run(tmp_path / "run", clients=3, messages_per_sender=2)
    assert main(["export", str(run_dir), "--format", "csv", "--format", "hlog"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"export: {run_dir / 'export' / 'deliveries.csv'}",
        f"export: {run_dir / 'export' / 'fanout-latency.hlog'}",
    ]
    assert sorted(p.name for p in (run_dir / "export").iterdir()) == [
        "deliveries.csv", "fanout-latency.hlog",
    ]  # fmt: skip


def test_cli_mistakes_end_in_one_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = build_run(tmp_path / "run", clients=3, messages_per_sender=2)
    both = ["export", str(run_dir), "--format", "csv", "--format", "parquet", "--out", "x.csv"]
    assert main(both) == 2
    assert capsys.readouterr().err == (
        "fanbench: error: --out names one file: give one --format with it\n"
    )
    assert main(["export", str(tmp_path / "nowhere"), "--format", "csv"]) == 2
    assert capsys.readouterr().err.strip().endswith("no such run directory")
    assert not (run_dir / "export").exists()
    assert not (tmp_path / "x.csv").exists()


def test_the_parser_offers_every_export_format() -> None:
    assert EXPORT_FORMATS == export.FORMATS


def test_a_failed_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = read_run(build_run(tmp_path / "run", clients=3, messages_per_sender=2))
    target = export.export_run(run, "csv")
    before = target.read_bytes()

    real_tables = export.delivery_tables

    def broken(run: Run) -> Any:
        yield from real_tables(run)
        raise OSError("disk full")

    monkeypatch.setattr(export, "delivery_tables", broken)
    with pytest.raises(OSError, match="disk full"):
        export.export_run(run, "csv")
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["deliveries.csv"]


# ------------------------------------------------------------------ HdrHistogram log


def read_hlog(path: Path) -> tuple[list[HdrHistogram], HistogramLogReader]:
    reader = HistogramLogReader(str(path), export.new_histogram())
    intervals = []
    for _ in range(10_000):
        interval = reader.get_next_interval_histogram()
        if interval is None:
            break
        intervals.append(interval)
    reader.close()
    return intervals, reader


def merged(intervals: list[HdrHistogram]) -> HdrHistogram:
    total = export.new_histogram()
    for interval in intervals:
        total.add(interval)
    return total


def assert_equivalent_percentiles(histogram: HdrHistogram, latency_ms: np.ndarray) -> None:
    """hdrh's percentile is the top of the bucket holding the value at its rank.

    hdrh ranks by rounding (p * n / 100 + 0.5); the analysis by nearest rank
    (ceil): the two agree wherever p * n / 100 is whole.
    """
    ordered = np.sort(latency_ms)
    for p in PERCENTILES:
        rank = max(int(p * len(ordered) / 100 + 0.5), 1)
        exact_ns = round(float(ordered[rank - 1]) * 1e6)
        assert histogram.get_value_at_percentile(p) == histogram.get_highest_equivalent_value(
            exact_ns
        ), p


def test_the_log_reads_back_with_hdrhs_reader_and_matches_the_analysis(tmp_path: Path) -> None:
    def latency(sender: int, seq: int, receiver: int) -> float:
        return 5.0 + 3.0 * sender + 7.0 * receiver + 11.0 * seq

    run_dir = build_run(tmp_path / "run", clients=5, messages_per_sender=8,
                        latency_ms=latency, warmup_s=2.5)  # fmt: skip
    run = read_run(run_dir)
    path = export.export_run(run, "hlog")
    intervals, reader = read_hlog(path)
    assert reader.get_start_time_sec() == pytest.approx(START_NS / 1e9)
    summary = analyze(run)
    total = merged(intervals)
    assert total.get_total_count() == summary.latency_ms.deliveries_measured == 6 * 5 * 4
    from_sent = summary.latency_ms.from_sent
    assert from_sent.max is not None
    assert from_sent.p50 is not None
    assert total.get_max_value() == total.get_highest_equivalent_value(int(from_sent.max * 1e6))
    # The run's own latencies, straight from the records: every receipt after warm-up.
    measured = run.deliveries["seq"] >= 2
    received = run.deliveries["received_ns"][measured]
    sent_at = START_NS + (run.deliveries["seq"][measured] + 1) * SECOND
    sent_at += run.deliveries["sender"][measured] * 10_000_000
    latency_ms = (received - sent_at) / 1e6
    assert_equivalent_percentiles(total, latency_ms)
    assert total.get_value_at_percentile(50) == total.get_highest_equivalent_value(
        int(from_sent.p50 * 1e6)
    )
    # One interval per second of receipt, each holding that second's deliveries.
    second = (received - START_NS) // SECOND
    assert len(intervals) == int(second.max() - second.min()) + 1
    for interval in intervals:
        s = round(interval.get_start_time_stamp() / 1000 - START_NS / 1e9)
        assert interval.get_end_time_stamp() - interval.get_start_time_stamp() == 1000
        assert interval.get_total_count() == int(np.sum(second == s))
        if interval.get_total_count():
            assert_equivalent_percentiles(interval, latency_ms[second == s])


def test_bucketed_recording_is_hdrhs_own() -> None:
    rng = np.random.default_rng(7)
    edges = [0, 1, 2, 2047, 2048, 2049, 4095, 4096, 10**6, 2**40 - 1, 2**40, export.HDR_HIGHEST_NS]
    values = np.concatenate(
        [
            np.array(edges),
            rng.integers(0, 10**7, 3000),
            (10 ** rng.uniform(0, 12.5, 3000)).astype(int),
        ]
    ).astype(np.int64)
    histogram = export.new_histogram()
    expected = [histogram.get_lowest_equivalent_value(int(v)) for v in values]
    assert export.lowest_equivalent(histogram, values).tolist() == expected
    one_by_one = export.new_histogram()
    for value in values.tolist():
        one_by_one.record_value(value)
    bucketed = export.new_histogram()
    assert export.record(bucketed, values) == 0
    assert bucketed.get_total_count() == one_by_one.get_total_count() == len(values)
    assert bucketed.equals(one_by_one)
    for p in (0.1, 50.0, 90.0, 99.0, 99.99, 100.0):
        assert bucketed.get_value_at_percentile(p) == one_by_one.get_value_at_percentile(p)


def test_logs_of_two_runs_merge_into_the_percentiles_of_both(tmp_path: Path) -> None:
    fast = read_run(build_run(tmp_path / "fast", clients=4, messages_per_sender=5, latency_ms=4.0))
    slow = read_run(
        build_run(tmp_path / "slow", clients=4, messages_per_sender=5,
                  latency_ms=lambda s, q, r: 40.0 + q)
    )  # fmt: skip
    both = merged(
        read_hlog(export.export_run(fast, "hlog"))[0]
        + read_hlog(export.export_run(slow, "hlog"))[0]
    )
    assert both.get_total_count() == 2 * 4 * 5 * 3
    every = np.concatenate([np.full(60, 4.0), np.repeat(40.0 + np.arange(5), 12)])
    assert_equivalent_percentiles(both, every)


def test_the_log_header_is_javas(tmp_path: Path) -> None:
    run = read_run(build_run(tmp_path / "run", clients=3, messages_per_sender=2))
    lines = export.export_run(run, "hlog").read_text().splitlines()
    assert lines[0] == "#[Histogram log format version 1.3]"
    assert (
        f"#[StartTime: {START_NS / 1e9:.3f} (seconds since epoch), 2023-11-14T22:13:20.000+00:00]"
        in lines
    )
    assert f"#[BaseTime: {START_NS / 1e9:.3f} (seconds since epoch)]" in lines
    legend = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
    data = lines[lines.index(legend) + 1 :]
    assert [line.split(",")[:3] for line in data] == [
        ["1.000", "1.000", "10.002"], ["2.000", "1.000", "10.002"],
    ]  # fmt: skip


def test_negative_latencies_are_counted_at_zero_and_said(tmp_path: Path) -> None:
    run = read_run(
        build_run(tmp_path / "run", clients=3, messages_per_sender=2,
                  latency_ms=lambda s, q, r: -2.0 if (s, q, r) == (0, 0, 1) else 10.0)
    )  # fmt: skip
    path = export.export_run(run, "hlog")
    assert "#1 negative latencies (clock trouble) recorded as 0" in path.read_text()
    total = merged(read_hlog(path)[0])
    assert (total.get_total_count(), total.get_count_at_value(0)) == (12, 1)


def test_a_run_with_no_deliveries_exports_empty_files(tmp_path: Path) -> None:
    every_pair = [(s, q, r) for s in range(3) for q in range(2) for r in range(3) if r != s]
    run = read_run(build_run(tmp_path / "run", clients=3, messages_per_sender=2, drop=every_pair))
    assert read_hlog(export.export_run(run, "hlog"))[0] == []
    table = pq.read_table(export.export_run(run, "parquet"))
    assert outcomes(table) == {"lost": 12}


# ------------------------------------------------------------------- a real swarm


@pytest.mark.timeout(300)
def test_a_real_swarm_exports_what_its_analysis_counts(tmp_path: Path) -> None:
    from tests.reliability.support import RUN_QUIETLY, fanbench, run_swarm, subprocess_env
    from tests.repo import REPO_ROOT

    swarm = run_swarm(
        "export", tmp_path / "run",
        ("--users", "3", "--spawn-rate", "10", "--duration", "4", "--send-interval", "0.5",
         "--warmup", "1", "--drain", "1", "--settle", "0.5", *RUN_QUIETLY),
    ).check()  # fmt: skip
    formats = [arg for fmt in EXPORT_FORMATS for arg in ("--format", fmt)]
    done = subprocess.run(
        fanbench("export", str(swarm.run_dir), *formats),
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    folder = swarm.run_dir / "export"
    table = pq.read_table(folder / "deliveries.parquet")
    assert_matches_account(table, swarm.run)
    assert swarm.counts.expected > 0
    with (folder / "deliveries.csv").open(newline="") as stream:
        assert sum(1 for _ in csv.DictReader(stream)) == table.num_rows
    total = merged(read_hlog(folder / "fanout-latency.hlog")[0])
    latency = swarm.summary.latency_ms
    assert total.get_total_count() == latency.deliveries_measured > 0
    # The rows' measured deliveries are exactly the analysis's latencies...
    counted = table.filter(
        pc.and_(pc.is_in(table["outcome"], pa.array(["delivered", "late"])), table["measured"])
    )
    latency_ms = counted.column("latency_ms").to_numpy()
    for key, p in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)):
        assert float(np.percentile(latency_ms, p, method="inverted_cdf")) == pytest.approx(
            latency.from_sent.named(key)
        )
    # ...and the log holds them, bucket for bucket.
    assert_equivalent_percentiles(total, latency_ms)
