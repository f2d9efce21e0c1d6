"""Loss accounting: what should have arrived, what did, and what went wrong (pure numpy).

Definitions (docs/measurement.md, "The ledger"):

* A message's **expected recipients** are the members of the sender's audience
  whose connection completed at or before the send, and which were still
  connected ``settle_ns`` after it; the sender is never one.
* **delivered** counts expected (message, recipient) pairs received at least once;
  **lost** = expected − delivered.
* **duplicates**: receipts of a pair beyond its first.
* **out of order**: per (sender, receiver), a receipt whose sequence number is
  below one already received on that pair.
* **late**: receipts after the drain deadline (still counted as delivered).
* **negative latency**: receipt stamped before its send — clock trouble,
  counted, never dropped.
* **unexpected**: receipts of pairs that were not expected (for instance a
  recipient that connected just after the send, or one that left within the
  settle window) — neither loss nor error. Many of them mean membership is
  missing: a worker died before its clients' memberships reached the master.
* **dropped**: connections the server closed (idle timeout, maximum duration,
  DeleteConnection, 1001 at shutdown); membership ends at the close, so later
  messages are not expected there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fanbench_common.rundir import STILL_CONNECTED, ErrorKind, Table

I64 = npt.NDArray[np.int64]
_CHUNK = 2048
_SEQ_BITS = 32


def message_keys(sender: npt.NDArray[Any], seq: npt.NDArray[Any]) -> I64:
    """One int64 per (sender, seq); client ids and sequence numbers stay below 2**31."""
    return (sender.astype(np.int64) << _SEQ_BITS) | seq.astype(np.int64)


@dataclass(frozen=True)
class LossAccount:
    messages: int
    expected: int
    delivered: int
    lost: int
    duplicates: int
    out_of_order: int
    late: int
    unexpected: int
    negative_latency: int
    error_frames: int
    receipts: int
    dropped: int = 0

    @property
    def loss_rate(self) -> float:
        return self.lost / self.expected if self.expected else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loss_rate": self.loss_rate}


@dataclass(frozen=True)
class Ledger:
    """Per-message and per-receipt facts the statistics are built from."""

    expected_per_message: I64
    """Aligned with the sends table."""
    delivered_per_message: I64
    """Expected pairs received at least once, aligned with the sends table."""
    receipt_message: I64
    """For each delivery row, the index of its send row (-1 when no such send)."""
    receipt_first: npt.NDArray[np.bool_]
    """For each delivery row, whether it is the first receipt of its pair."""
    receipt_expected: npt.NDArray[np.bool_]
    """For each delivery row, whether its pair was expected."""


def _audience_codes(
    membership: Table,
) -> tuple[dict[int, int], npt.NDArray[np.int64], list[npt.NDArray[np.int64]]]:
    """client → row, audience code per row, and the member rows of each audience."""
    row_of = {int(c): i for i, c in enumerate(membership["client"])}
    _, codes = np.unique(membership["audience"], return_inverse=True)
    codes = codes.astype(np.int64)
    members = [np.flatnonzero(codes == code) for code in range(int(codes.max(initial=-1)) + 1)]
    return row_of, codes, members


def expected_recipients(sends: Table, membership: Table, settle_ns: int) -> I64:
    """How many recipients each message should reach (aligned with the sends table)."""
    expected = np.zeros(len(sends["client"]), dtype=np.int64)
    if not len(expected) or not len(membership["client"]):
        return expected
    row_of, codes, members = _audience_codes(membership)
    connected = membership["connected_ns"]
    disconnected = np.where(
        membership["disconnected_ns"] == STILL_CONNECTED,
        np.iinfo(np.int64).max,
        membership["disconnected_ns"],
    )
    sender_rows = np.array([row_of.get(int(c), -1) for c in sends["client"]], dtype=np.int64)
    sent = sends["sent_ns"]
    for code, rows in enumerate(members):
        (messages,) = np.nonzero((sender_rows >= 0) & (codes[np.maximum(sender_rows, 0)] == code))
        for start in range(0, len(messages), _CHUNK):
            chunk = messages[start : start + _CHUNK]
            t = sent[chunk][:, None]
            present = (connected[rows][None, :] <= t) & (
                disconnected[rows][None, :] >= t + settle_ns
            )
            present &= rows[None, :] != sender_rows[chunk][:, None]
            expected[chunk] = present.sum(axis=1)
    return expected


def ledger(sends: Table, deliveries: Table, membership: Table, settle_ns: int) -> Ledger:
    n_sends, n_receipts = len(sends["client"]), len(deliveries["client"])
    expected = expected_recipients(sends, membership, settle_ns)

    send_keys = message_keys(sends["client"], sends["seq"])
    order = np.argsort(send_keys, kind="stable")
    receipt_keys = message_keys(deliveries["sender"], deliveries["seq"])
    position = np.searchsorted(send_keys[order], receipt_keys)
    position = np.minimum(position, max(n_sends - 1, 0))
    found = (
        (n_sends > 0) & (send_keys[order][position] == receipt_keys)
        if n_sends
        else np.zeros(n_receipts, dtype=bool)
    )
    receipt_message = np.where(found, order[position] if n_sends else 0, -1).astype(np.int64)

    # First receipt of each (message, receiver) pair, in arrival order.
    pair_order = np.lexsort((deliveries["received_ns"], deliveries["client"], receipt_keys))
    sorted_keys = receipt_keys[pair_order]
    sorted_clients = deliveries["client"][pair_order]
    is_first_sorted = np.ones(n_receipts, dtype=bool)
    if n_receipts > 1:
        is_first_sorted[1:] = (sorted_keys[1:] != sorted_keys[:-1]) | (
            sorted_clients[1:] != sorted_clients[:-1]
        )
    receipt_first = np.empty(n_receipts, dtype=bool)
    receipt_first[pair_order] = is_first_sorted

    receipt_expected = np.zeros(n_receipts, dtype=bool)
    if n_receipts and len(membership["client"]):
        row_of, codes, _ = _audience_codes(membership)
        receiver_rows = np.array([row_of.get(int(c), -1) for c in deliveries["client"]])
        sender_rows = np.array([row_of.get(int(c), -1) for c in deliveries["sender"]])
        sent_ns = sends["sent_ns"][np.maximum(receipt_message, 0)] if n_sends else 0
        t = np.where(found, sent_ns, 0)
        disconnected = membership["disconnected_ns"][np.maximum(receiver_rows, 0)]
        disconnected = np.where(
            disconnected == STILL_CONNECTED, np.iinfo(np.int64).max, disconnected
        )
        receipt_expected = (
            found
            & (receiver_rows >= 0)
            & (sender_rows >= 0)
            & (receiver_rows != sender_rows)
            & (codes[np.maximum(receiver_rows, 0)] == codes[np.maximum(sender_rows, 0)])
            & (membership["connected_ns"][np.maximum(receiver_rows, 0)] <= t)
            & (disconnected >= t + settle_ns)
        )
    delivered = np.bincount(
        receipt_message[receipt_first & receipt_expected], minlength=n_sends
    ).astype(np.int64)[:n_sends]
    return Ledger(expected, delivered, receipt_message, receipt_first, receipt_expected)


def out_of_order_count(deliveries: Table) -> int:
    """Receipts whose seq is below the highest already received on their (sender, receiver)."""
    n = len(deliveries["client"])
    if n < 2:
        return 0
    order = np.lexsort((deliveries["received_ns"], deliveries["sender"], deliveries["client"]))
    receiver, sender = deliveries["client"][order], deliveries["sender"][order]
    seq = deliveries["seq"][order].astype(np.int64)
    new_pair = np.ones(n, dtype=bool)
    new_pair[1:] = (receiver[1:] != receiver[:-1]) | (sender[1:] != sender[:-1])
    group = np.cumsum(new_pair) - 1
    # Offsetting each pair's seqs by its group number keeps the running max inside the pair.
    shifted = (group.astype(np.int64) << _SEQ_BITS) + seq
    running_max = np.maximum.accumulate(shifted)
    previous_max = np.concatenate(([np.iinfo(np.int64).min], running_max[:-1]))
    return int(np.sum(~new_pair & (shifted < previous_max)))


def account(
    sends: Table,
    deliveries: Table,
    membership: Table,
    errors: Table,
    settle_ns: int,
    drain_deadline_ns: int | None = None,
    facts: Ledger | None = None,
) -> LossAccount:
    """The run's counts; ``facts`` is the ledger of these tables when the caller has built it."""
    facts = facts or ledger(sends, deliveries, membership, settle_ns)
    expected = int(facts.expected_per_message.sum())
    delivered = int(facts.delivered_per_message.sum())
    found = facts.receipt_message >= 0
    sent = sends["sent_ns"][np.maximum(facts.receipt_message, 0)] if len(sends["sent_ns"]) else 0
    late = (
        int(np.sum(deliveries["received_ns"] > drain_deadline_ns))
        if drain_deadline_ns is not None
        else 0
    )
    return LossAccount(
        messages=len(sends["client"]),
        expected=expected,
        delivered=delivered,
        lost=expected - delivered,
        duplicates=int(np.sum(~facts.receipt_first)),
        out_of_order=out_of_order_count(deliveries),
        late=late,
        unexpected=int(np.sum(facts.receipt_first & ~facts.receipt_expected)),
        negative_latency=int(np.sum(found & (deliveries["received_ns"] < sent))),
        error_frames=int(np.sum(errors["kind"] == ErrorKind.ERROR_FRAME)),
        receipts=len(deliveries["client"]),
        dropped=int(np.sum(errors["kind"] == ErrorKind.DROPPED)),
    )
