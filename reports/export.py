"""Exports other tools can load: one row per delivery (CSV, Parquet) and HdrHistogram logs.

**Delivery rows.** One row for each expected (message, recipient) pair, whose
outcome is ``delivered`` (first receipt by the drain deadline), ``late`` (first
receipt after it) or ``lost`` (none); then one row for each other receipt:
``duplicate`` (a pair's receipt beyond its first) or ``unexpected`` (the first
receipt of a pair that was not expected, or of a message with no send). So the
outcome counts are the loss account's: delivered + late = delivered, lost,
duplicates, unexpected. A message is identified by ``(sender, seq)``. Times are
epoch nanoseconds on the master's clock: workers' clock offsets were applied
when their records were merged into the run directory. ``measured`` is false for
messages sent during warm-up, which the latency figures leave out.

The loss ledger (``fanbench_common.loss``) stays the authority: the pairs are listed
here with its presence rule and checked, message by message, against its
expected and delivered counts; a disagreement is a bug and stops the export.

**HdrHistogram interval log** (format 1.3, as the Java HdrHistogram writes it):
fan-out latency from send to first receipt, in nanoseconds, one interval per
second of receipt from the test's start, the deliveries the run's own latency
figures count. Interval logs add up across runs and hosts without averaging
percentiles (``HistogramLogReader``, Java's ``HistogramLogProcessor``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from hdrh.histogram import HdrHistogram

from fanbench_common.errors import FanbenchBug, FanbenchError
from fanbench_common.loss import Ledger, ledger
from fanbench_common.rundir import STILL_CONNECTED, Run
from reports.analysis import _settle_ns, measured_window_start

FORMATS = ("csv", "parquet", "hlog")
DEFAULT_NAMES = {
    "csv": "deliveries.csv",
    "parquet": "deliveries.parquet",
    "hlog": "fanout-latency.hlog",
}

DELIVERED, LATE, LOST, DUPLICATE, UNEXPECTED = (
    "delivered", "late", "lost", "duplicate", "unexpected",
)  # fmt: skip
OUTCOMES = (DELIVERED, LATE, LOST, DUPLICATE, UNEXPECTED)

SCHEMA = pa.schema(
    [
        ("sender", pa.int64()),
        ("seq", pa.int64()),
        ("recipient", pa.int64()),
        ("audience", pa.string()),
        ("outcome", pa.string()),
        ("measured", pa.bool_()),
        ("intended_ns", pa.int64()),
        ("sent_ns", pa.int64()),
        ("received_ns", pa.int64()),
        ("latency_ms", pa.float64()),
    ]
)
"""Nullable where a fact does not exist: no received time for a lost pair, no send for a
receipt of an unknown message."""

PAIR_CELLS_PER_BATCH = 1 << 20
"""Presence-matrix cells (messages × audience members) per batch: bounds memory for big rooms."""

# HdrHistogram: latencies in nanoseconds, the unit Java's log tools assume by default.
HDR_LOWEST_NS = 1
HDR_HIGHEST_NS = 3_600 * 1_000_000_000
HDR_SIGNIFICANT_DIGITS = 3
HLOG_FORMAT_VERSION = "1.3"
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


class ExportError(FanbenchError):
    """The export could not be written (the message says where and why)."""


class LedgerMismatchError(FanbenchBug):
    """The listed pairs disagree with the loss ledger's counts: a bug, never a user error."""


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HDR_LOWEST_NS, HDR_HIGHEST_NS, HDR_SIGNIFICANT_DIGITS)


# ---------------------------------------------------------------- delivery rows (pure)


class _Context:
    """The run's tables, its ledger and the lookups every batch shares."""

    def __init__(self, run: Run, facts: Ledger) -> None:
        self.run, self.facts = run, facts
        membership = run.membership
        self.settle_ns = _settle_ns(run)
        self.measured_from = measured_window_start(run)
        deadline = run.meta["times"].get("drain_deadline_ns")
        self.deadline = int(deadline) if deadline is not None else None
        clients = membership["client"].astype(np.int64)
        self.client_order = np.argsort(clients, kind="stable")
        self.clients_sorted = clients[self.client_order]
        self.audiences, codes = np.unique(membership["audience"], return_inverse=True)
        self.codes = codes.astype(np.int64)
        self.members = [np.flatnonzero(self.codes == c) for c in range(len(self.audiences))]
        self.disconnected = np.where(
            membership["disconnected_ns"] == STILL_CONNECTED,
            np.iinfo(np.int64).max,
            membership["disconnected_ns"],
        )
        self.sender_rows = self.rows_of(run.sends["client"])
        # First receipts of expected pairs, keyed by (message index, recipient).
        first = facts.receipt_first & facts.receipt_expected
        self.first_index = np.flatnonzero(first)
        self.first_keys = _pair_keys(facts.receipt_message[first], run.deliveries["client"][first])
        order = np.argsort(self.first_keys, kind="stable")
        self.first_index, self.first_keys = self.first_index[order], self.first_keys[order]
        # The other receipts, grouped by message so each batch takes its own.
        others = np.flatnonzero(~first)
        self.other_index = others[np.argsort(facts.receipt_message[others], kind="stable")]
        self.other_message = facts.receipt_message[self.other_index]

    def rows_of(self, clients: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """Each client's membership row (its last, as the ledger's lookup keeps), or -1."""
        wanted = clients.astype(np.int64)
        at = np.searchsorted(self.clients_sorted, wanted, side="right") - 1
        found = (at >= 0) & (self.clients_sorted[np.maximum(at, 0)] == wanted)
        if not len(self.clients_sorted):
            return np.full(len(wanted), -1, dtype=np.int64)
        return np.where(found, self.client_order[np.maximum(at, 0)], -1).astype(np.int64)


def _pair_keys(message: npt.NDArray[Any], recipient: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    return (message.astype(np.int64) << 32) | recipient.astype(np.int64)


def _expected_pairs(
    ctx: _Context, messages: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(message index, recipient membership row) for each expected pair of these messages."""
    membership = ctx.run.membership
    sent = ctx.run.sends["sent_ns"]
    out_messages: list[npt.NDArray[np.int64]] = []
    out_rows: list[npt.NDArray[np.int64]] = []
    known = messages[ctx.sender_rows[messages] >= 0]
    for code, rows in enumerate(ctx.members):
        mine = known[ctx.codes[ctx.sender_rows[known]] == code]
        if not len(mine) or not len(rows):
            continue
        t = sent[mine][:, None]
        present = (membership["connected_ns"][rows][None, :] <= t) & (
            ctx.disconnected[rows][None, :] >= t + ctx.settle_ns
        )
        present &= rows[None, :] != ctx.sender_rows[mine][:, None]
        which, member = np.nonzero(present)
        out_messages.append(mine[which])
        out_rows.append(rows[member])
    if not out_messages:
        empty = np.array([], dtype=np.int64)
        return empty, empty
    pair_messages, pair_rows = np.concatenate(out_messages), np.concatenate(out_rows)
    order = np.lexsort((pair_rows, pair_messages))
    return pair_messages[order], pair_rows[order]


def _batches(ctx: _Context) -> Iterator[npt.NDArray[np.int64]]:
    """Message indices in sends order, in batches sized to the largest audience."""
    n = len(ctx.run.sends["client"])
    widest = max((len(rows) for rows in ctx.members), default=1)
    size = max(1, PAIR_CELLS_PER_BATCH // max(widest, 1))
    for start in range(0, n, size):
        yield np.arange(start, min(n, start + size), dtype=np.int64)


def _check_against_ledger(
    ctx: _Context,
    messages: npt.NDArray[np.int64],
    pair_messages: npt.NDArray[np.int64],
    received: npt.NDArray[np.bool_],
) -> None:
    first = int(messages[0]) if len(messages) else 0
    width = len(messages)
    expected = np.bincount(pair_messages - first, minlength=width)[:width]
    delivered = np.bincount(pair_messages[received] - first, minlength=width)[:width]
    if not np.array_equal(expected, ctx.facts.expected_per_message[messages]) or not (
        np.array_equal(delivered, ctx.facts.delivered_per_message[messages])
    ):
        raise LedgerMismatchError(
            f"messages {first}..{first + width - 1}: listed pairs disagree with the loss ledger"
        )


def _table(
    ctx: _Context,
    message: npt.NDArray[np.int64],
    recipient: npt.NDArray[Any],
    receipt: npt.NDArray[np.int64],
    outcome: npt.NDArray[Any],
) -> pa.Table:
    """Rows from message indices (-1: none), recipients and receipt indices (-1: none)."""
    sends, deliveries = ctx.run.sends, ctx.run.deliveries
    has_send, has_receipt = message >= 0, receipt >= 0
    at_send, at_receipt = np.maximum(message, 0), np.maximum(receipt, 0)

    def of_send(column: str) -> npt.NDArray[np.int64]:
        values = sends[column][at_send] if len(sends[column]) else np.zeros(len(message))
        return values.astype(np.int64)

    def of_receipt(column: str) -> npt.NDArray[np.int64]:
        values = (
            deliveries[column][at_receipt] if len(deliveries[column]) else np.zeros(len(receipt))
        )
        return values.astype(np.int64)

    sender = np.where(has_send, of_send("client"), of_receipt("sender"))
    seq = np.where(has_send, of_send("seq"), of_receipt("seq"))
    sender_row = ctx.rows_of(sender)
    audience = np.full(len(sender), None, dtype=object)
    if len(ctx.codes):
        known = sender_row >= 0
        audience[known] = ctx.audiences[ctx.codes[sender_row[known]]]
    sent, received = of_send("sent_ns"), of_receipt("received_ns")
    both = has_send & has_receipt
    return pa.table(
        {
            "sender": sender,
            "seq": seq,
            "recipient": recipient.astype(np.int64),
            "audience": pa.array(audience, type=pa.string()),
            "outcome": pa.array(outcome, type=pa.string()),
            "measured": pa.array(sent >= ctx.measured_from, mask=~has_send),
            "intended_ns": pa.array(of_send("intended_ns"), mask=~has_send),
            "sent_ns": pa.array(sent, mask=~has_send),
            "received_ns": pa.array(received, mask=~has_receipt),
            "latency_ms": pa.array((received - sent) / NS_PER_MS, mask=~both),
        },
        schema=SCHEMA,
    )


def _batch_table(ctx: _Context, messages: npt.NDArray[np.int64]) -> pa.Table:
    pair_messages, pair_rows = _expected_pairs(ctx, messages)
    recipients = ctx.run.membership["client"][pair_rows].astype(np.int64)
    keys = _pair_keys(pair_messages, recipients)
    at = np.minimum(np.searchsorted(ctx.first_keys, keys), max(len(ctx.first_keys) - 1, 0))
    received = (
        ctx.first_keys[at] == keys if len(ctx.first_keys) else np.zeros(len(keys), dtype=bool)
    )
    _check_against_ledger(ctx, messages, pair_messages, received)
    receipt = np.where(received, ctx.first_index[at] if len(ctx.first_index) else 0, -1)
    outcome = np.full(len(keys), LOST, dtype=object)
    if received.any():
        late = _after_deadline(ctx, receipt[received])
        outcome[received] = np.where(late, LATE, DELIVERED)
    expected_rows = _table(ctx, pair_messages, recipients, receipt.astype(np.int64), outcome)
    low, high = np.searchsorted(ctx.other_message, [messages[0], messages[-1] + 1])
    return pa.concat_tables([expected_rows, _other_rows(ctx, ctx.other_index[low:high])])


def _other_rows(ctx: _Context, receipts: npt.NDArray[np.int64]) -> pa.Table:
    """Rows for receipts that are not the first of an expected pair."""
    first = ctx.facts.receipt_first[receipts]
    outcome = np.where(first, UNEXPECTED, DUPLICATE).astype(object)
    return _table(
        ctx,
        ctx.facts.receipt_message[receipts],
        ctx.run.deliveries["client"][receipts],
        receipts,
        outcome,
    )


def _after_deadline(ctx: _Context, receipts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    if ctx.deadline is None:
        return np.zeros(len(receipts), dtype=bool)
    after: npt.NDArray[np.bool_] = ctx.run.deliveries["received_ns"][receipts] > ctx.deadline
    return after


def delivery_tables(run: Run) -> Iterator[pa.Table]:
    """The delivery rows, in batches: each message's expected pairs, then its other receipts;
    receipts of messages with no send come last."""
    facts = ledger(run.sends, run.deliveries, run.membership, _settle_ns(run))
    ctx = _Context(run, facts)
    for messages in _batches(ctx):
        yield _batch_table(ctx, messages)
    orphans = ctx.other_index[ctx.other_message < 0]
    if len(orphans) or not len(run.sends["client"]):
        yield _other_rows(ctx, orphans)


# ------------------------------------------------------------- HdrHistogram log (pure)


def fanout_latencies(tables: Iterator[pa.Table]) -> tuple[npt.NDArray[np.int64], ...]:
    """(received_ns, latency_ns) of the deliveries the run's latency figures count:
    first receipts of expected pairs (on time or late) of messages sent after warm-up."""
    received: list[npt.NDArray[np.int64]] = []
    latency: list[npt.NDArray[np.int64]] = []
    for table in tables:
        outcome = table.column("outcome").to_numpy(zero_copy_only=False)
        measured = table.column("measured").fill_null(False).to_numpy(zero_copy_only=False)
        keep = np.isin(outcome, (DELIVERED, LATE)) & measured
        got = table.column("received_ns").to_numpy(zero_copy_only=False)[keep].astype(np.int64)
        sent = table.column("sent_ns").to_numpy(zero_copy_only=False)[keep].astype(np.int64)
        received.append(got)
        latency.append(got - sent)
    if not received:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    return np.concatenate(received), np.concatenate(latency)


def lowest_equivalent(
    histogram: HdrHistogram, values: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """hdrh's ``get_lowest_equivalent_value`` for many values at once (its bucket arithmetic:
    a value keeps its top ``sub_bucket_half_count_magnitude + 1`` bits above the unit)."""
    masked = values | histogram.sub_bucket_mask
    bit_length = np.frexp(masked.astype(np.float64))[1].astype(np.int64)
    shift = np.maximum(bit_length - (histogram.sub_bucket_half_count_magnitude + 1), 0)
    shift = np.maximum(shift, histogram.unit_magnitude)
    lowest: npt.NDArray[np.int64] = (values >> shift) << shift
    return lowest


def record(histogram: HdrHistogram, values_ns: npt.NDArray[np.int64]) -> int:
    """Add values to a histogram; negative ones (clock trouble) as 0. Returns how many were.

    Values are first rounded down to their bucket, so hdrh is called once per bucket, not
    once per value (the histogram is the same either way).
    """
    negative = int(np.sum(values_ns < 0))
    clipped = np.clip(values_ns, 0, HDR_HIGHEST_NS).astype(np.int64)
    buckets, counts = np.unique(lowest_equivalent(histogram, clipped), return_counts=True)
    for value, count in zip(buckets.tolist(), counts.tolist(), strict=True):
        histogram.record_value(value, count)
    return negative


def interval_histograms(
    start_ns: int, received_ns: npt.NDArray[np.int64], latency_ns: npt.NDArray[np.int64]
) -> list[tuple[int, HdrHistogram]]:
    """One histogram per second of receipt since ``start_ns``, from the first such second to
    the last (empty seconds included, so the log's timeline has no gaps)."""
    if not len(received_ns):
        return []
    second = (received_ns - start_ns) // NS_PER_S
    order = np.argsort(second, kind="stable")
    seconds, starts = np.unique(second[order], return_index=True)
    groups = dict(zip(seconds.tolist(), np.split(latency_ns[order], starts[1:]), strict=True))
    intervals: list[tuple[int, HdrHistogram]] = []
    for s in range(int(seconds[0]), int(seconds[-1]) + 1):
        histogram = new_histogram()
        record(histogram, groups.get(s, np.array([], dtype=np.int64)))
        intervals.append((s, histogram))
    return intervals


def _seconds(epoch_ns: int) -> str:
    return f"{epoch_ns / NS_PER_S:.3f}"


def hlog_text(
    start_ns: int, intervals: list[tuple[int, HdrHistogram]], comments: list[str]
) -> Iterator[str]:
    """The interval log's lines, headers as Java's ``HistogramLogWriter`` writes them.

    Interval start times are seconds since BaseTime (the test's start); the
    interval max is in milliseconds (nanosecond values over a ratio of 10^6).
    """
    stamp = datetime.fromtimestamp(start_ns / NS_PER_S, UTC).isoformat(timespec="milliseconds")
    yield f"#[Histogram log format version {HLOG_FORMAT_VERSION}]\n"
    for comment in comments:
        yield f"#{comment}\n"
    yield f"#[StartTime: {_seconds(start_ns)} (seconds since epoch), {stamp}]\n"
    yield f"#[BaseTime: {_seconds(start_ns)} (seconds since epoch)]\n"
    yield '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'
    for second, histogram in intervals:
        payload = histogram.encode().decode("ascii")
        interval_max_ms = histogram.get_max_value() / NS_PER_MS
        yield f"{float(second):.3f},1.000,{interval_max_ms:.3f},{payload}\n"


def hlog_lines(run: Run) -> Iterator[str]:
    start_ns = int(run.meta["times"]["start_ns"])
    received, latency = fanout_latencies(delivery_tables(run))
    comments = [
        f"fanbench fan-out latency (send to first receipt, ns) of {run.path.name}",
        f"variant={run.meta.get('variant', '')} target={run.meta.get('target', '')}",
    ]
    negative = int(np.sum(latency < 0))
    if negative:
        comments.append(f"{negative} negative latencies (clock trouble) recorded as 0")
    yield from hlog_text(start_ns, interval_histograms(start_ns, received, latency), comments)


# ------------------------------------------------------------------------ files (shell)


def _atomic_write(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write next to ``target`` and rename, so a failure never leaves half a file there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_rows(run: Run, stream: IO[bytes], fmt: str) -> None:
    writer: pq.ParquetWriter | pa_csv.CSVWriter
    writer = (
        pq.ParquetWriter(stream, SCHEMA) if fmt == "parquet" else pa_csv.CSVWriter(stream, SCHEMA)
    )
    with writer:
        for table in delivery_tables(run):
            writer.write_table(table)


def export_run(run: Run, fmt: str, out: Path | None = None) -> Path:
    """Write one export of ``run``; the default place is ``RUN_DIR/export/``."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    target = out if out is not None else run.path / "export" / DEFAULT_NAMES[fmt]
    if target.is_dir():
        target = target / DEFAULT_NAMES[fmt]

    def write(stream: IO[bytes]) -> None:
        if fmt == "hlog":
            for line in hlog_lines(run):
                stream.write(line.encode("ascii"))
        else:
            _write_rows(run, stream, fmt)

    _atomic_write(target, write)
    return target
