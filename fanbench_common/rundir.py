"""The run directory: the contract between the load generator and the reports.

Layout (schema version 1)::

    runs/<name>/
      run.json               metadata: schema, scenario, target, variant, versions, host,
                             times, clock offsets, generator health summary, stage stats
      records/sends.npz      one row per message sent
      records/deliveries.npz one row per frame received that carried an envelope
      records/membership.npz one row per connection: audience, connect-complete, disconnect-start
      records/errors.npz     one row per error (error frame, failed connect, bad frame, ...)
      records/health.npz     one row per generator-health sample
      locust/                Locust's CSVs (when run through Locust)
      stage/                 local stage logs (when run on the local stage)
      report/                written by ``fanbench report``

Every timestamp is epoch nanoseconds on the master's clock (workers' offsets,
measured at the start and at the stop with their drift, are applied when the run
directory is written and listed in run.json's ``clock_offsets``; an entry with
``measured: false`` had no sample). ``disconnected_ns`` is -1 for a connection
still open when records were collected; a connection the server closed ends at
the close (an ``errors`` row of kind ``dropped``). run.json's ``drain`` says how
collection waited for fan-outs to finish and ``collection.missing_processes``
names workers that never flushed. These keys are additions: readers default them,
so the schema version is unchanged.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fanbench_common.errors import RunDirError

SCHEMA_VERSION = 1
STILL_CONNECTED = -1

COLUMNS: dict[str, dict[str, str]] = {
    "sends": {"client": "i8", "seq": "i8", "intended_ns": "i8", "sent_ns": "i8", "bytes": "i4"},
    "deliveries": {"client": "i8", "sender": "i8", "seq": "i8", "received_ns": "i8"},
    "membership": {"client": "i8", "audience": "U", "connected_ns": "i8", "disconnected_ns": "i8"},
    "errors": {"client": "i8", "t_ns": "i8", "kind": "U", "detail": "U"},
    "health": {
        "process": "i8", "t_ns": "i8", "cpu_percent": "f8",
        "send_lag_ms": "f8", "loop_lag_ms": "f8",
    },
}  # fmt: skip


class ErrorKind(StrEnum):
    """The ``kind`` column of ``errors``: what went wrong for one client at one moment."""

    CONNECT_FAILED = "connect_failed"
    """The handshake was refused or failed; ``detail`` has the status or exception."""
    DROPPED = "dropped"
    """The server closed the connection (idle timeout, two-hour limit, DeleteConnection)."""
    ERROR_FRAME = "error_frame"
    """API Gateway answered with an error frame (Forbidden, Internal server error, ...)."""
    BINARY_FRAME = "binary_frame"
    """A binary frame arrived where chat sends text."""
    UNRECOGNIZED_FRAME = "unrecognized_frame"
    """A text frame that is neither an envelope nor an error frame."""
    SEND_FAILED = "send_failed"
    """The client could not send its message."""
    NO_SCENARIO = "no_scenario"
    """A worker's user never received the master's scenario, so it sent nothing."""


REQUIRED_META = ("schema_version", "scenario", "target", "variant", "times")

Table = dict[str, npt.NDArray[Any]]


def default_run_dir(root: Path = Path("runs")) -> Path:
    """``runs/<UTC timestamp>``: sortable, and unique at one run per second."""
    return root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def empty_table(name: str) -> Table:
    return {column: np.array([], dtype=kind) for column, kind in COLUMNS[name].items()}


def as_table(name: str, columns: Mapping[str, Any]) -> Table:
    """Coerce columns to the schema's types, checking names and equal lengths."""
    schema = COLUMNS[name]
    if set(columns) != set(schema):
        raise RunDirError(f"{name}: columns {sorted(columns)} do not match {sorted(schema)}")
    table = {column: np.asarray(columns[column], dtype=kind) for column, kind in schema.items()}
    lengths = {len(values) for values in table.values()}
    if len(lengths) > 1:
        raise RunDirError(f"{name}: columns have different lengths {sorted(lengths)}")
    return table


@dataclass(frozen=True)
class Run:
    path: Path
    meta: dict[str, Any]
    sends: Table
    deliveries: Table
    membership: Table
    errors: Table
    health: Table

    @property
    def scenario(self) -> dict[str, Any]:
        scenario: dict[str, Any] = self.meta["scenario"]
        return scenario


def write_run(path: Path, meta: Mapping[str, Any], tables: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write run.json and records/*.npz (missing tables are written empty)."""
    records = path / "records"
    records.mkdir(parents=True, exist_ok=True)
    for name in COLUMNS:
        table = as_table(name, tables[name]) if name in tables else empty_table(name)
        np.savez(records / f"{name}.npz", **table)  # type: ignore[arg-type]
    document = {"schema_version": SCHEMA_VERSION, **meta}
    (path / "run.json").write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
    return path


def _read_table(path: Path, name: str) -> Table:
    file = path / "records" / f"{name}.npz"
    if not file.is_file():
        raise RunDirError(f"{path}: missing records/{name}.npz")
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with loaded as archive:
            columns = {column: archive[column] for column in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise RunDirError(f"{path}: records/{name}.npz is corrupt ({error})") from None
    return as_table(name, columns)


def read_run(path: Path) -> Run:
    """Load a run directory, or raise ``RunDirError`` naming exactly what is wrong."""
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    meta_file = path / "run.json"
    if not meta_file.is_file():
        raise RunDirError(f"{path}: missing run.json")
    try:
        meta = json.loads(meta_file.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path}: run.json is not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise RunDirError(f"{path}: run.json is not a JSON object")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise RunDirError(f"{path}: run.json lacks {', '.join(missing)}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise RunDirError(
            f"{path}: schema version {meta['schema_version']}"
            f" (this fanbench reads {SCHEMA_VERSION})"
        )
    tables = {name: _read_table(path, name) for name in COLUMNS}
    return Run(path=path, meta=meta, **tables)
