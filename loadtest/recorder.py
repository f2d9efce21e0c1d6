"""Per-process record buffers and the master-side collector that merges them.

The receive path appends a few integers per frame to ``array`` buffers (cheap,
no allocation per row); batches leave as bytes and string lists, which msgpack
carries as-is, and become numpy columns only at the collector.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reports.rundir import COLUMNS, STILL_CONNECTED, write_run

TIME_COLUMNS = {
    "sends": ("intended_ns", "sent_ns"),
    "deliveries": ("received_ns",),
    "membership": ("connected_ns", "disconnected_ns"),
    "errors": ("t_ns",),
    "health": ("t_ns",),
}
_ARRAY_CODE = {"i8": "q", "i4": "i", "f8": "d"}
MAX_BATCH_ROWS = 50_000

Batch = dict[str, Any]


def _new_columns(table: str) -> dict[str, Any]:
    return {
        column: [] if kind == "U" else array(_ARRAY_CODE[kind])
        for column, kind in COLUMNS[table].items()
    }


class Recorder:
    """One process's buffers. Append from any greenlet; ``take_batch`` ships and clears."""

    def __init__(self, process: int) -> None:
        self.process = process
        self._lock = threading.Lock()
        self._tables = {name: _new_columns(name) for name in COLUMNS}
        self._open: dict[int, tuple[str, int]] = {}
        self.sent = 0
        self.received = 0

    def send(self, client: int, seq: int, intended_ns: int, sent_ns: int, size: int) -> None:
        t = self._tables["sends"]
        t["client"].append(client)
        t["seq"].append(seq)
        t["intended_ns"].append(intended_ns)
        t["sent_ns"].append(sent_ns)
        t["bytes"].append(size)
        self.sent += 1

    def delivery(self, client: int, sender: int, seq: int, received_ns: int) -> None:
        t = self._tables["deliveries"]
        t["client"].append(client)
        t["sender"].append(sender)
        t["seq"].append(seq)
        t["received_ns"].append(received_ns)
        self.received += 1

    def connected(self, client: int, audience: str, connected_ns: int) -> None:
        """Connect complete; the membership row is written at disconnect or collection."""
        self._open[client] = (audience, connected_ns)

    def disconnecting(self, client: int, disconnected_ns: int) -> None:
        opened = self._open.pop(client, None)
        if opened is not None:
            self._membership(client, opened[0], opened[1], disconnected_ns)

    def _membership(
        self, client: int, audience: str, connected_ns: int, disconnected_ns: int
    ) -> None:
        t = self._tables["membership"]
        t["client"].append(client)
        t["audience"].append(audience)
        t["connected_ns"].append(connected_ns)
        t["disconnected_ns"].append(disconnected_ns)

    def error(self, client: int, t_ns: int, kind: str, detail: str) -> None:
        t = self._tables["errors"]
        t["client"].append(client)
        t["t_ns"].append(t_ns)
        t["kind"].append(kind)
        t["detail"].append(detail[:200])

    def health(self, t_ns: int, cpu_percent: float, send_lag_ms: float, loop_lag_ms: float) -> None:
        t = self._tables["health"]
        t["process"].append(self.process)
        t["t_ns"].append(t_ns)
        t["cpu_percent"].append(cpu_percent)
        t["send_lag_ms"].append(send_lag_ms)
        t["loop_lag_ms"].append(loop_lag_ms)

    def take_batch(self, final: bool = False, max_rows: int = MAX_BATCH_ROWS) -> Batch:
        """Up to ``max_rows`` rows per table, removed from the buffers.

        With ``final``, connections still open are written as still connected.
        Call until ``has_more`` is false to empty the buffers.
        """
        with self._lock:
            if final:
                for client, (audience, connected_ns) in self._open.items():
                    self._membership(client, audience, connected_ns, STILL_CONNECTED)
                self._open.clear()
            tables: dict[str, dict[str, Any]] = {}
            for name, columns in self._tables.items():
                out: dict[str, Any] = {}
                for column, values in columns.items():
                    head = values[:max_rows]
                    del values[:max_rows]
                    out[column] = list(head) if isinstance(head, list) else head.tobytes()
                tables[name] = out
            return {"process": self.process, "tables": tables, "has_more": self.has_more()}

    def has_more(self) -> bool:
        return any(
            len(columns["client" if "client" in columns else "t_ns"])
            for columns in self._tables.values()
        )


def batch_columns(batch: Batch, offset_ns: int = 0) -> dict[str, dict[str, npt.NDArray[Any]]]:
    """A shipped batch as numpy columns, shifted onto the master's clock by ``-offset_ns``."""
    tables: dict[str, dict[str, npt.NDArray[Any]]] = {}
    for name, columns in batch["tables"].items():
        out: dict[str, npt.NDArray[Any]] = {}
        for column, kind in COLUMNS[name].items():
            raw = columns[column]
            values = np.asarray(raw, dtype=str) if kind == "U" else np.frombuffer(raw, dtype=kind)
            if offset_ns and column in TIME_COLUMNS[name]:
                values = np.where(values == STILL_CONNECTED, values, values - offset_ns)
            out[column] = values
        tables[name] = out
    return tables


class Collector:
    """The master's merge of every process's batches; writes the run directory."""

    def __init__(self) -> None:
        self._parts: dict[str, list[dict[str, npt.NDArray[Any]]]] = {name: [] for name in COLUMNS}
        self.offsets_ns: dict[int, int] = {}
        self.rows: dict[str, int] = dict.fromkeys(COLUMNS, 0)
        self.rows_by_process: dict[int, dict[str, int]] = {}

    def add(self, batch: Batch) -> None:
        process = int(batch["process"])
        per_process = self.rows_by_process.setdefault(process, dict.fromkeys(COLUMNS, 0))
        for name, columns in batch_columns(batch, self.offsets_ns.get(process, 0)).items():
            count = len(columns["client"] if "client" in columns else columns["t_ns"])
            if count:
                self._parts[name].append(columns)
                self.rows[name] += count
                per_process[name] += count

    def tables(self) -> dict[str, dict[str, npt.NDArray[Any]]]:
        merged: dict[str, dict[str, npt.NDArray[Any]]] = {}
        for name, parts in self._parts.items():
            if parts:
                merged[name] = {
                    col: np.concatenate([p[col] for p in parts]) for col in COLUMNS[name]
                }
            else:
                merged[name] = {
                    col: np.array([], dtype=kind if kind != "U" else "U1")
                    for col, kind in COLUMNS[name].items()
                }
        return merged

    def write(self, path: Path, meta: Mapping[str, Any]) -> Path:
        return write_run(path, meta, self.tables())
