"""Per-process record buffers and the master-side collector that merges them.

The receive path appends a few integers per frame to ``array`` buffers (cheap,
no allocation per row); batches leave as bytes and string lists, which msgpack
carries as-is, and become numpy columns only at the collector.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fanbench_common.rundir import COLUMNS, STILL_CONNECTED, ErrorKind, write_run
from loadtest.clock import NO_SKEW, ClockFit, Skew, skew_for

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

    def __init__(self, process: int, skew: Skew | None = None) -> None:
        self.process = process
        self._lock = threading.Lock()
        self._tables = {name: _new_columns(name) for name in COLUMNS}
        self._open: dict[int, tuple[str, int]] = {}
        self.sent = 0
        self.received = 0
        self.clients = 0
        self.dropped = 0
        skew = skew_for(process) if skew is None else skew
        self.now_ns: Callable[[], int] = time.time_ns if skew is NO_SKEW else skew.now_ns
        """This process's clock: every stamp it records, and its answer to the master's pings
        (``time.time_ns`` itself unless a test skews it: it runs once per receipt)."""

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
        """Connect complete: the membership ships now, still open, so that a process that
        dies later leaves its clients' memberships behind; its end ships as a second row."""
        self._open[client] = (audience, connected_ns)
        self._membership(client, audience, connected_ns, STILL_CONNECTED)
        self.clients += 1

    def disconnecting(self, client: int, disconnected_ns: int) -> None:
        opened = self._open.pop(client, None)
        if opened is not None:
            self._membership(client, opened[0], opened[1], disconnected_ns)

    def dropped_by_server(self, client: int, t_ns: int, detail: str) -> None:
        """The server closed the connection: membership ends here, and the drop is counted."""
        self.disconnecting(client, t_ns)
        self.error(client, t_ns, ErrorKind.DROPPED, detail)
        self.dropped += 1

    def _membership(
        self, client: int, audience: str, connected_ns: int, disconnected_ns: int
    ) -> None:
        t = self._tables["membership"]
        t["client"].append(client)
        t["audience"].append(audience)
        t["connected_ns"].append(connected_ns)
        t["disconnected_ns"].append(disconnected_ns)

    def error(self, client: int, t_ns: int, kind: ErrorKind, detail: str) -> None:
        t = self._tables["errors"]
        t["client"].append(client)
        t["t_ns"].append(t_ns)
        t["kind"].append(kind.value)
        t["detail"].append(detail[:200])

    def health(self, t_ns: int, cpu_percent: float, send_lag_ms: float, loop_lag_ms: float) -> None:
        t = self._tables["health"]
        t["process"].append(self.process)
        t["t_ns"].append(t_ns)
        t["cpu_percent"].append(cpu_percent)
        t["send_lag_ms"].append(send_lag_ms)
        t["loop_lag_ms"].append(loop_lag_ms)

    def take_batch(self, final: bool = False, max_rows: int = MAX_BATCH_ROWS) -> Batch:
        """Up to ``max_rows`` rows per table, removed from the buffers, and the counters.

        Call until ``has_more`` is false to empty the buffers. ``final`` is accepted for
        callers that mark the last flush; open connections already shipped at connect.
        """
        with self._lock:
            tables: dict[str, dict[str, Any]] = {}
            for name, columns in self._tables.items():
                out: dict[str, Any] = {}
                for column, values in columns.items():
                    head = values[:max_rows]
                    del values[:max_rows]
                    out[column] = list(head) if isinstance(head, list) else head.tobytes()
                tables[name] = out
            return {
                "process": self.process,
                "tables": tables,
                "has_more": self.has_more(),
                "counters": self.counters(),
            }

    def counters(self) -> dict[str, int]:
        return {
            "sends": self.sent,
            "receipts": self.received,
            "clients": self.clients,
            ErrorKind.DROPPED: self.dropped,
        }

    def has_more(self) -> bool:
        return any(
            len(columns["client" if "client" in columns else "t_ns"])
            for columns in self._tables.values()
        )


def batch_columns(batch: Batch, offset_ns: int = 0) -> dict[str, dict[str, npt.NDArray[Any]]]:
    """A shipped batch as numpy columns, shifted by ``-offset_ns`` (0: as stamped)."""
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


def _on_master_clock(table: str, columns: dict[str, npt.NDArray[Any]], fit: ClockFit) -> None:
    for column in TIME_COLUMNS[table]:
        values = columns[column]
        columns[column] = np.where(values == STILL_CONNECTED, values, fit.to_master(values))


def merge_membership(
    membership: dict[str, npt.NDArray[Any]],
    process: npt.NDArray[np.int64],
    ended: Mapping[int, int] | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """One row per client: the open row shipped at connect and the closing row shipped at
    disconnect become one. ``process`` gives each row's process; ``ended`` closes, at the
    given time, the still-open connections of a process that went missing (its clients
    left with it)."""
    clients = membership["client"]
    if not len(clients):
        return membership
    order = np.lexsort((membership["disconnected_ns"], clients, process))
    last_of_client = np.ones(len(order), dtype=bool)
    last_of_client[:-1] = (clients[order][1:] != clients[order][:-1]) | (
        process[order][1:] != process[order][:-1]
    )
    keep = order[last_of_client]  # STILL_CONNECTED (-1) sorts first, so a real end wins
    merged = {column: values[keep] for column, values in membership.items()}
    for missing, at_ns in (ended or {}).items():
        cut = (process[keep] == missing) & (merged["disconnected_ns"] == STILL_CONNECTED)
        merged["disconnected_ns"] = np.where(cut, at_ns, merged["disconnected_ns"])
    return merged


class Collector:
    """The master's merge of every process's batches; writes the run directory.

    Batches stay on the stamping process's clock until ``tables`` moves them onto the
    master's with the fits known then (at write: both clock measurements).
    """

    def __init__(self) -> None:
        self._parts: dict[str, list[tuple[int, dict[str, npt.NDArray[Any]]]]] = {
            name: [] for name in COLUMNS
        }
        self.rows: dict[str, int] = dict.fromkeys(COLUMNS, 0)
        self.rows_by_process: dict[int, dict[str, int]] = {}
        self.counters: dict[int, dict[str, int]] = {}

    def add(self, batch: Batch) -> None:
        process = int(batch["process"])
        per_process = self.rows_by_process.setdefault(process, dict.fromkeys(COLUMNS, 0))
        if "counters" in batch:
            self.counters[process] = dict(batch["counters"])
        for name, columns in batch_columns(batch).items():
            count = len(columns["client"] if "client" in columns else columns["t_ns"])
            if count:
                self._parts[name].append((process, columns))
                self.rows[name] += count
                per_process[name] += count

    def tables(
        self,
        fits: Mapping[int, ClockFit | None] | None = None,
        ended: Mapping[int, int] | None = None,
    ) -> dict[str, dict[str, npt.NDArray[Any]]]:
        """Every table, on the master's clock where a process has a fit, one membership row
        per client (``merge_membership``)."""
        fits = fits or {}
        merged: dict[str, dict[str, npt.NDArray[Any]]] = {}
        for name, parts in self._parts.items():
            if parts:
                shifted = []
                for process, columns in parts:
                    fit = fits.get(process)
                    if fit is not None:
                        columns = dict(columns)
                        _on_master_clock(name, columns, fit)
                    shifted.append(columns)
                merged[name] = {
                    col: np.concatenate([p[col] for p in shifted]) for col in COLUMNS[name]
                }
            else:
                merged[name] = {
                    col: np.array([], dtype=kind if kind != "U" else "U1")
                    for col, kind in COLUMNS[name].items()
                }
        owners = [
            np.full(len(columns["client"]), process, dtype=np.int64)
            for process, columns in self._parts["membership"]
        ]
        owner = np.concatenate(owners) if owners else np.array([], dtype=np.int64)
        merged["membership"] = merge_membership(merged["membership"], owner, ended)
        return merged

    def write(
        self,
        path: Path,
        meta: Mapping[str, Any],
        fits: Mapping[int, ClockFit | None] | None = None,
        ended: Mapping[int, int] | None = None,
    ) -> Path:
        return write_run(path, meta, self.tables(fits, ended))
