"""The run directory: round trip, and a clear RunDirError for every missing or corrupt piece."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanbench_common.errors import RunDirError
from fanbench_common.rundir import (
    COLUMNS,
    SCHEMA_VERSION,
    STILL_CONNECTED,
    ErrorKind,
    as_table,
    empty_table,
    read_run,
    write_run,
)

META: dict[str, Any] = {
    "scenario": {"room_size": 0, "settle_s": 1.0},
    "target": "ws://127.0.0.1:8080/local",
    "variant": "optimized",
    "versions": {"fanbench": "test"},
    "times": {"start_ns": 1, "stop_sending_ns": 2, "end_ns": 3},
    "clock_offsets": {"1": {"offset_ns": 5, "uncertainty_ns": 2}},
}

TABLES: dict[str, dict[str, Any]] = {
    "sends": {
        "client": [1, 2],
        "seq": [0, 0],
        "intended_ns": [100, 200],
        "sent_ns": [101, 202],
        "bytes": [64, 2**31 - 1],
    },
    "deliveries": {
        "client": [2, 1, 2],
        "sender": [1, 2, 1],
        "seq": [0, 0, 0],
        "received_ns": [150, 250, 151],
    },
    "membership": {
        "client": [1, 2],
        "audience": ["*", "p0-r12"],
        "connected_ns": [10, 20],
        "disconnected_ns": [STILL_CONNECTED, 2**62],
    },
    "errors": {
        "client": [1],
        "t_ns": [300],
        "kind": ["error_frame"],
        "detail": ['{"message": "Internal server error"} – ünïcode'],
    },
    "health": {
        "process": [0, 1],
        "t_ns": [1, 2],
        "cpu_percent": [12.5, 99.75],
        "send_lag_ms": [0.25, 3.0],
        "loop_lag_ms": [0.0, 1.5],
    },
}


@pytest.fixture
def run_path(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", META, TABLES)


def test_round_trip_keeps_every_value_and_type(run_path: Path) -> None:
    run = read_run(run_path)
    assert run.path == run_path
    assert run.meta == {"schema_version": SCHEMA_VERSION, **META}
    assert run.scenario == META["scenario"]
    for name, columns in TABLES.items():
        table = getattr(run, name)
        assert set(table) == set(COLUMNS[name])
        for column, values in columns.items():
            assert table[column].tolist() == values, (name, column)
            assert table[column].dtype.kind == np.dtype(COLUMNS[name][column]).kind
            if COLUMNS[name][column] != "U":
                assert table[column].dtype == np.dtype(COLUMNS[name][column])


def test_missing_tables_are_written_empty(tmp_path: Path) -> None:
    run = read_run(write_run(tmp_path / "run", META, {"sends": TABLES["sends"]}))
    assert len(run.sends["client"]) == 2
    for name in ("deliveries", "membership", "errors", "health"):
        table = getattr(run, name)
        assert set(table) == set(COLUMNS[name])
        assert all(len(values) == 0 for values in table.values())


def test_records_are_documented_files(run_path: Path) -> None:
    assert sorted(p.name for p in (run_path / "records").iterdir()) == sorted(
        f"{name}.npz" for name in COLUMNS
    )
    assert json.loads((run_path / "run.json").read_text())["schema_version"] == SCHEMA_VERSION


def test_meta_values_json_cannot_hold_are_written_as_text(tmp_path: Path) -> None:
    run = read_run(write_run(tmp_path / "run", {**META, "where": tmp_path}, {}))
    assert run.meta["where"] == str(tmp_path)


def test_no_such_directory(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no such run directory"):
        read_run(tmp_path / "nowhere")


def test_missing_run_json(run_path: Path) -> None:
    (run_path / "run.json").unlink()
    with pytest.raises(RunDirError, match=r"missing run\.json"):
        read_run(run_path)


@pytest.mark.parametrize("text", ["{not json", "", '{"a": 1'])
def test_invalid_run_json(run_path: Path, text: str) -> None:
    (run_path / "run.json").write_text(text)
    with pytest.raises(RunDirError, match=r"run.json is not valid JSON"):
        read_run(run_path)


def test_run_json_not_utf8(run_path: Path) -> None:
    (run_path / "run.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RunDirError, match=r"run.json is not valid JSON"):
        read_run(run_path)


def test_run_json_not_an_object(run_path: Path) -> None:
    (run_path / "run.json").write_text("[1, 2]")
    with pytest.raises(RunDirError, match=r"run\.json is not a JSON object"):
        read_run(run_path)


@pytest.mark.parametrize("key", ["scenario", "target", "variant", "times", "schema_version"])
def test_run_json_missing_a_required_key(run_path: Path, key: str) -> None:
    meta = json.loads((run_path / "run.json").read_text())
    del meta[key]
    (run_path / "run.json").write_text(json.dumps(meta))
    with pytest.raises(RunDirError, match=f"run.json lacks {key}"):
        read_run(run_path)


def test_wrong_schema_version(tmp_path: Path) -> None:
    path = write_run(tmp_path / "run", {**META, "schema_version": SCHEMA_VERSION + 1}, TABLES)
    with pytest.raises(RunDirError, match=f"schema version {SCHEMA_VERSION + 1}"):
        read_run(path)


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_missing_records_file(run_path: Path, name: str) -> None:
    (run_path / "records" / f"{name}.npz").unlink()
    with pytest.raises(RunDirError, match=f"missing records/{name}.npz"):
        read_run(run_path)


def _truncated(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "npy"])
def test_corrupt_records_file(run_path: Path, kind: str) -> None:
    file = run_path / "records" / "deliveries.npz"
    if kind == "garbage":
        file.write_bytes(b"\x00\x01this is not a zip archive" * 20)
    elif kind == "empty":
        file.write_bytes(b"")
    elif kind == "truncated":
        file.write_bytes(_truncated(file))
    else:  # a single array saved where an archive belongs
        with file.open("wb") as handle:
            np.save(handle, np.arange(3))
    with pytest.raises(RunDirError, match=r"records/deliveries.npz is corrupt"):
        read_run(run_path)


def test_records_with_unequal_columns(run_path: Path) -> None:
    np.savez(
        run_path / "records" / "sends.npz",
        client=np.array([1, 2, 3]),
        seq=np.array([0, 1]),
        intended_ns=np.array([1, 2, 3]),
        sent_ns=np.array([1, 2, 3]),
        bytes=np.array([1, 2, 3], dtype="i4"),
    )
    with pytest.raises(RunDirError, match=r"sends: columns have different lengths \[2, 3\]"):
        read_run(run_path)


def test_records_with_a_missing_column(run_path: Path) -> None:
    np.savez(
        run_path / "records" / "membership.npz",
        client=np.array([1]),
        connected_ns=np.array([1]),
        disconnected_ns=np.array([1]),
    )
    with pytest.raises(RunDirError, match=r"membership: columns .* do not match"):
        read_run(run_path)


def test_write_refuses_unequal_columns(tmp_path: Path) -> None:
    bad = {**TABLES, "deliveries": {**TABLES["deliveries"], "seq": [0]}}
    with pytest.raises(RunDirError, match="deliveries: columns have different lengths"):
        write_run(tmp_path / "run", META, bad)


def test_as_table_coerces_to_the_schema() -> None:
    table = as_table("health", {c: [1] for c in COLUMNS["health"]})
    assert table["cpu_percent"].dtype == np.float64
    assert table["process"].dtype == np.int64
    assert all(len(values) == 0 for values in empty_table("errors").values())


def test_error_kinds_are_the_strings_the_run_directory_stores() -> None:
    assert [kind.value for kind in ErrorKind] == [
        "connect_failed", "dropped", "error_frame", "binary_frame", "unrecognized_frame",
        "send_failed", "no_scenario",
    ]  # fmt: skip
    stored = np.array([ErrorKind.DROPPED.value, "error_frame"])
    assert list(stored == ErrorKind.ERROR_FRAME) == [False, True]
