"""Record buffers, shipped batches, clock offsets and the master's collector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from fanbench_common.rundir import COLUMNS, STILL_CONNECTED, ErrorKind, read_run
from loadtest.clock import ClockFit
from loadtest.recorder import TIME_COLUMNS, Batch, Collector, Recorder, batch_columns


def filled(process: int = 0, base: int = 1_000_000) -> Recorder:
    """A recorder with a few rows in every table; times start at ``base``."""
    recorder = Recorder(process)
    recorder.send(10, 0, base + 1, base + 2, 64)
    recorder.send(10, 1, base + 3, base + 4, 2**31 - 1)
    recorder.send(11, 0, base + 5, base + 6, 7)
    recorder.delivery(11, 10, 0, base + 20)
    recorder.delivery(11, 10, 1, base + 21)
    recorder.connected(10, "*", base + 100)
    recorder.connected(11, "p0-r1", base + 101)
    recorder.disconnecting(10, base + 200)
    recorder.error(11, base + 30, ErrorKind.ERROR_FRAME, '{"message": "Internal server error"}')
    recorder.health(base + 40, 55.5, 1.25, 0.5)
    return recorder


def drain(recorder: Recorder, max_rows: int = 50_000) -> list[Batch]:
    batches = [recorder.take_batch(final=True, max_rows=max_rows)]
    while batches[-1]["has_more"]:
        batches.append(recorder.take_batch(max_rows=max_rows))
        assert len(batches) < 100
    return batches


def test_batches_carry_bytes_and_string_lists() -> None:
    batch = filled(process=3).take_batch()
    assert batch["process"] == 3
    assert set(batch["tables"]) == set(COLUMNS)
    for name, columns in batch["tables"].items():
        for column, kind in COLUMNS[name].items():
            value = columns[column]
            if kind == "U":
                assert isinstance(value, list), (name, column)
                assert all(isinstance(item, str) for item in value)
            else:
                assert isinstance(value, bytes), (name, column)


def test_batches_survive_msgpack() -> None:
    batch = filled().take_batch(final=True)
    shipped = msgpack.unpackb(msgpack.packb(batch), raw=False)
    original, restored = batch_columns(batch), batch_columns(shipped)
    for name in COLUMNS:
        for column in COLUMNS[name]:
            np.testing.assert_array_equal(restored[name][column], original[name][column])


def test_batch_columns_restore_every_value_exactly() -> None:
    base = 1_700_000_000_000_000_000
    tables = batch_columns(filled(base=base).take_batch(final=True))
    sends = tables["sends"]
    assert sends["client"].tolist() == [10, 10, 11]
    assert sends["seq"].tolist() == [0, 1, 0]
    assert sends["intended_ns"].tolist() == [base + 1, base + 3, base + 5]
    assert sends["sent_ns"].tolist() == [base + 2, base + 4, base + 6]
    assert sends["bytes"].tolist() == [64, 2**31 - 1, 7]
    assert sends["bytes"].dtype == np.dtype("i4")
    assert sends["sent_ns"].dtype == np.dtype("i8")
    deliveries = tables["deliveries"]
    assert [deliveries[c].tolist() for c in ("client", "sender", "seq", "received_ns")] == [
        [11, 11],
        [10, 10],
        [0, 1],
        [base + 20, base + 21],
    ]
    errors = tables["errors"]
    assert errors["kind"].tolist() == ["error_frame"]
    assert errors["detail"].tolist() == ['{"message": "Internal server error"}']
    assert errors["t_ns"].tolist() == [base + 30]
    health = tables["health"]
    assert health["process"].tolist() == [0]
    assert health["cpu_percent"].tolist() == [55.5]
    assert health["send_lag_ms"].tolist() == [1.25]
    assert health["loop_lag_ms"].tolist() == [0.5]


def test_every_column_of_a_table_has_the_same_length() -> None:
    tables = batch_columns(filled().take_batch(final=True))
    expected = {"sends": 3, "deliveries": 2, "membership": 3, "errors": 1, "health": 1}
    for name, columns in tables.items():
        assert {len(values) for values in columns.values()} == {expected[name]}, name


def test_membership_ships_at_connect_and_again_at_disconnect() -> None:
    recorder = Recorder(0)
    recorder.connected(10, "*", 100)
    recorder.connected(11, "p0-r1", 101)
    first = batch_columns(recorder.take_batch())["membership"]
    # Both ship at once, still open: a process that dies later leaves them behind.
    assert first["client"].tolist() == [10, 11]
    assert first["disconnected_ns"].tolist() == [STILL_CONNECTED, STILL_CONNECTED]
    recorder.disconnecting(10, 200)
    second = batch_columns(recorder.take_batch(final=True))["membership"]
    assert second["client"].tolist() == [10]
    assert (second["connected_ns"].tolist(), second["disconnected_ns"].tolist()) == ([100], [200])
    again = batch_columns(recorder.take_batch(final=True))["membership"]
    assert len(again["client"]) == 0
    assert recorder.counters()["clients"] == 2


def test_the_collector_keeps_one_membership_row_per_client() -> None:
    recorder = Recorder(0)
    recorder.connected(10, "*", 100)
    recorder.connected(11, "*", 101)
    collector = Collector()
    collector.add(recorder.take_batch())
    recorder.disconnecting(10, 200)
    collector.add(recorder.take_batch(final=True))
    membership = collector.tables()["membership"]
    rows = sorted(
        zip(membership["client"].tolist(), membership["disconnected_ns"].tolist(), strict=True)
    )
    assert rows == [(10, 200), (11, STILL_CONNECTED)]


def test_a_server_close_ends_membership_and_counts_a_drop() -> None:
    recorder = Recorder(0)
    recorder.connected(10, "*", 100)
    recorder.dropped_by_server(10, 150, "received 1001 (going away) Going away")
    recorder.dropped_by_server(10, 160, "twice")  # a second close of one client ends nothing
    tables = batch_columns(recorder.take_batch())
    assert tables["membership"]["disconnected_ns"].tolist() == [STILL_CONNECTED, 150]
    assert tables["errors"]["kind"].tolist() == ["dropped", "dropped"]
    assert recorder.counters()["dropped"] == 2


def test_disconnecting_an_unknown_client_writes_nothing() -> None:
    recorder = Recorder(0)
    recorder.disconnecting(99, 5)
    assert not recorder.has_more()
    assert len(batch_columns(recorder.take_batch(final=True))["membership"]["client"]) == 0


def test_max_rows_bounds_each_batch_and_has_more_says_what_is_left() -> None:
    recorder = Recorder(0)
    for seq in range(5):
        recorder.send(1, seq, seq, seq, 10)
    sizes, seqs = [], []
    while True:
        batch = recorder.take_batch(max_rows=2)
        sends = batch_columns(batch)["sends"]
        sizes.append(len(sends["seq"]))
        seqs.extend(sends["seq"].tolist())
        if not batch["has_more"]:
            break
        assert len(sizes) < 10
    assert sizes == [2, 2, 1]
    assert seqs == [0, 1, 2, 3, 4]
    assert not recorder.has_more()


def test_has_more_sees_tables_without_a_client_column() -> None:
    recorder = Recorder(0)
    recorder.health(1, 1.0, 1.0, 1.0)
    recorder.health(2, 1.0, 1.0, 1.0)
    assert recorder.has_more()
    assert recorder.take_batch(max_rows=1)["has_more"]
    assert not recorder.take_batch(max_rows=1)["has_more"]


def test_final_batch_of_many_open_connections_is_bounded_too() -> None:
    recorder = Recorder(0)
    for client in range(5):
        recorder.connected(client, "*", 100 + client)
    batches = drain(recorder, max_rows=2)
    clients = [c for b in batches for c in batch_columns(b)["membership"]["client"].tolist()]
    assert sorted(clients) == list(range(5))
    assert len(batches) == 3


def test_counters_and_error_detail_truncation() -> None:
    recorder = filled()
    assert (recorder.sent, recorder.received) == (3, 2)
    recorder.error(1, 1, ErrorKind.UNRECOGNIZED_FRAME, "x" * 1000)
    errors = batch_columns(recorder.take_batch())["errors"]
    assert len(errors["detail"][-1]) == 200


def test_offsets_move_times_onto_the_masters_clock() -> None:
    batch = filled().take_batch(final=True)
    plain, shifted = batch_columns(batch), batch_columns(batch, offset_ns=1000)
    for name, columns in plain.items():
        for column, values in columns.items():
            moved = shifted[name][column]
            if column in TIME_COLUMNS[name]:
                want = np.where(values == STILL_CONNECTED, values, values - 1000)
                np.testing.assert_array_equal(moved, want, err_msg=f"{name}.{column}")
            else:
                np.testing.assert_array_equal(moved, values, err_msg=f"{name}.{column}")
    membership = shifted["membership"]
    assert membership["connected_ns"].tolist() == [
        1_000_100 - 1000, 1_000_101 - 1000, 1_000_100 - 1000,
    ]  # fmt: skip
    assert membership["disconnected_ns"].tolist() == [
        STILL_CONNECTED, STILL_CONNECTED, 1_000_200 - 1000,
    ]  # fmt: skip
    assert shifted["sends"]["bytes"].tolist() == [64, 2**31 - 1, 7]


def test_negative_offsets_move_times_forward() -> None:
    batch = filled().take_batch(final=True)
    shifted = batch_columns(batch, offset_ns=-50)
    assert shifted["deliveries"]["received_ns"].tolist() == [1_000_070, 1_000_071]
    assert shifted["membership"]["disconnected_ns"].tolist() == [
        STILL_CONNECTED, STILL_CONNECTED, 1_000_250,
    ]  # fmt: skip


def test_collector_merges_two_processes_and_writes_a_readable_run(tmp_path: Path) -> None:
    worker_a, worker_b = filled(process=1), filled(process=2, base=5_000_000)
    collector = Collector()
    for batch in [*drain(worker_a, max_rows=2), *drain(worker_b, max_rows=2)]:
        collector.add(batch)
    assert collector.rows == {
        "sends": 6,
        "deliveries": 4,
        "membership": 6,
        "errors": 2,
        "health": 2,
    }
    assert collector.rows_by_process[1] == {
        "sends": 3, "deliveries": 2, "membership": 3, "errors": 1, "health": 1,
    }  # fmt: skip
    assert collector.rows_by_process[2] == collector.rows_by_process[1]

    meta: dict[str, Any] = {
        "scenario": {"settle_s": 1.0},
        "target": "ws://127.0.0.1:1/local",
        "variant": "optimized",
        "times": {"start_ns": 0, "stop_sending_ns": 1, "end_ns": 2},
    }
    fits = {2: ClockFit(anchor_ns=0, offset_ns=700, drift_ppm=0.0, uncertainty_ns=1, samples=1)}
    run = read_run(collector.write(tmp_path / "run", meta, fits))
    assert len(run.sends["client"]) == 6
    assert sorted(run.sends["sent_ns"].tolist()) == sorted(
        [1_000_002, 1_000_004, 1_000_006, 5_000_002 - 700, 5_000_004 - 700, 5_000_006 - 700]
    )
    assert sorted(run.sends["bytes"].tolist()) == sorted([64, 2**31 - 1, 7] * 2)
    assert sorted(run.membership["disconnected_ns"].tolist()) == sorted(
        [1_000_200, 5_000_200 - 700, STILL_CONNECTED, STILL_CONNECTED]
    )
    assert sorted(run.membership["audience"].tolist()) == ["*", "*", "p0-r1", "p0-r1"]
    assert sorted(run.health["process"].tolist()) == [1, 2]
    for name in COLUMNS:
        table = getattr(run, name)
        assert len({len(values) for values in table.values()}) == 1, name


def test_collector_with_nothing_writes_an_empty_readable_run(tmp_path: Path) -> None:
    meta: dict[str, Any] = {
        "scenario": {},
        "target": "ws://127.0.0.1:1/local",
        "variant": "",
        "times": {"start_ns": 0},
    }
    collector = Collector()
    collector.add(Recorder(4).take_batch(final=True))
    assert collector.rows == dict.fromkeys(COLUMNS, 0)
    run = read_run(collector.write(tmp_path / "run", meta))
    for name in COLUMNS:
        assert all(len(values) == 0 for values in getattr(run, name).values()), name


@pytest.mark.parametrize("rows", [1, 3, 1000])
def test_int32_bytes_column_round_trips_with_the_others(rows: int) -> None:
    recorder = Recorder(0)
    for seq in range(rows):
        recorder.send(1, seq, seq, seq, seq * 1000)
    batch = recorder.take_batch()
    assert len(batch["tables"]["sends"]["bytes"]) == rows * 4
    assert len(batch["tables"]["sends"]["seq"]) == rows * 8
    sends = batch_columns(batch)["sends"]
    assert len(sends["bytes"]) == len(sends["seq"]) == rows
    assert sends["bytes"].tolist() == [seq * 1000 for seq in range(rows)]
