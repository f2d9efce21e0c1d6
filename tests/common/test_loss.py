"""Loss arithmetic on hand-built ledgers with known answers, and against a naive reference."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fanbench_common.loss import LossAccount, account, ledger, message_keys, out_of_order_count
from fanbench_common.rundir import STILL_CONNECTED, Table, as_table, empty_table

SETTLE = 10
Send = tuple[int, int, int]
"""(client, seq, sent_ns)."""
Receipt = tuple[int, int, int, int]
"""(receiver, sender, seq, received_ns)."""
Member = tuple[int, str, int, int]
"""(client, audience, connected_ns, disconnected_ns)."""


def sends_table(rows: Sequence[Send]) -> Table:
    return as_table(
        "sends",
        {
            "client": [r[0] for r in rows],
            "seq": [r[1] for r in rows],
            "intended_ns": [r[2] for r in rows],
            "sent_ns": [r[2] for r in rows],
            "bytes": [64] * len(rows),
        },
    )


def deliveries_table(rows: Sequence[Receipt]) -> Table:
    return as_table(
        "deliveries",
        {
            "client": [r[0] for r in rows],
            "sender": [r[1] for r in rows],
            "seq": [r[2] for r in rows],
            "received_ns": [r[3] for r in rows],
        },
    )


def membership_table(rows: Sequence[Member]) -> Table:
    return as_table(
        "membership",
        {
            "client": [r[0] for r in rows],
            "audience": [r[1] for r in rows],
            "connected_ns": [r[2] for r in rows],
            "disconnected_ns": [r[3] for r in rows],
        },
    )


def errors_table(kinds: Sequence[str]) -> Table:
    return as_table(
        "errors",
        {
            "client": [0] * len(kinds),
            "t_ns": list(range(len(kinds))),
            "kind": list(kinds),
            "detail": ["x"] * len(kinds),
        },
    )


def run_account(
    sends: Sequence[Send],
    receipts: Sequence[Receipt],
    members: Sequence[Member],
    errors: Sequence[str] = (),
    settle_ns: int = SETTLE,
    drain_deadline_ns: int | None = None,
) -> LossAccount:
    return account(
        sends_table(sends),
        deliveries_table(receipts),
        membership_table(members),
        errors_table(errors),
        settle_ns,
        drain_deadline_ns,
    )


# Three clients in the global audience, connected from 0, still connected at collection.
EVERYONE: list[Member] = [(c, "*", 0, STILL_CONNECTED) for c in (1, 2, 3)]
ONE_SEND: list[Send] = [(1, 0, 100)]


# --- expected recipients ---------------------------------------------------------------


def test_sender_is_never_an_expected_recipient() -> None:
    result = run_account(ONE_SEND, [(2, 1, 0, 110), (3, 1, 0, 111)], EVERYONE)
    assert (result.messages, result.expected, result.delivered, result.lost) == (1, 2, 2, 0)
    assert result.unexpected == 0


def test_sender_receiving_its_own_message_is_unexpected_not_delivered() -> None:
    result = run_account(ONE_SEND, [(1, 1, 0, 110), (2, 1, 0, 110)], EVERYONE)
    assert (result.expected, result.delivered, result.lost, result.unexpected) == (2, 1, 1, 1)


def test_recipient_connected_after_the_send_is_not_expected() -> None:
    late_joiner: Member = (4, "*", 101, STILL_CONNECTED)
    receipts = [(2, 1, 0, 110), (3, 1, 0, 110), (4, 1, 0, 112)]
    result = run_account(ONE_SEND, receipts, [*EVERYONE, late_joiner])
    assert (result.expected, result.delivered, result.lost) == (2, 2, 0)
    assert result.unexpected == 1


def test_recipient_connected_exactly_at_the_send_is_expected() -> None:
    result = run_account(ONE_SEND, [], [*EVERYONE, (4, "*", 100, STILL_CONNECTED)])
    assert (result.expected, result.lost) == (3, 3)


def test_recipient_leaving_within_the_settle_window_is_not_expected() -> None:
    leaver: Member = (4, "*", 0, 100 + SETTLE - 1)
    receipts = [(2, 1, 0, 101), (3, 1, 0, 101), (4, 1, 0, 101)]
    result = run_account(ONE_SEND, receipts, [*EVERYONE, leaver])
    assert (result.expected, result.delivered, result.lost) == (2, 2, 0)
    assert result.unexpected == 1


def test_recipient_leaving_at_the_end_of_the_settle_window_is_expected() -> None:
    stayer: Member = (4, "*", 0, 100 + SETTLE)
    result = run_account(ONE_SEND, [(4, 1, 0, 101)], [*EVERYONE, stayer])
    assert (result.expected, result.delivered, result.lost) == (3, 1, 2)


def test_recipient_leaving_after_settle_is_expected_and_lost_if_not_received() -> None:
    stayer: Member = (4, "*", 0, 500)
    receipts = [(2, 1, 0, 110), (3, 1, 0, 110)]
    result = run_account(ONE_SEND, receipts, [*EVERYONE, stayer])
    assert (result.expected, result.delivered, result.lost) == (3, 2, 1)
    assert result.loss_rate == pytest.approx(1 / 3)


def test_recipient_gone_before_the_send_is_not_expected() -> None:
    result = run_account(ONE_SEND, [], [*EVERYONE, (4, "*", 0, 50)])
    assert result.expected == 2


def test_still_connected_is_forever_not_time_minus_one() -> None:
    # With an enormous settle window only a connection still open qualifies.
    members: list[Member] = [
        (1, "*", 0, STILL_CONNECTED),
        (2, "*", 0, STILL_CONNECTED),
        (3, "*", 0, 10**15),
    ]
    result = run_account(ONE_SEND, [(2, 1, 0, 110)], members, settle_ns=10**17)
    assert (result.expected, result.delivered, result.lost) == (1, 1, 0)


def test_rooms_only_expect_the_senders_audience() -> None:
    members: list[Member] = [
        (1, "r0", 0, STILL_CONNECTED),
        (2, "r0", 0, STILL_CONNECTED),
        (3, "r1", 0, STILL_CONNECTED),
        (4, "r1", 0, STILL_CONNECTED),
        (5, "r1", 0, STILL_CONNECTED),
        (6, "*", 0, STILL_CONNECTED),
    ]
    sends: list[Send] = [(1, 0, 100), (3, 0, 100), (6, 0, 100)]
    facts = ledger(sends_table(sends), deliveries_table([]), membership_table(members), SETTLE)
    assert facts.expected_per_message.tolist() == [1, 2, 0]
    # 3 receives a message from room r0: a leak across rooms, unexpected, not delivered.
    receipts = [(2, 1, 0, 110), (3, 1, 0, 110), (4, 3, 0, 110)]
    result = run_account(sends, receipts, members)
    assert (result.expected, result.delivered, result.lost, result.unexpected) == (3, 2, 1, 1)


def test_sender_missing_from_membership_expects_nobody() -> None:
    result = run_account([(9, 0, 100)], [(2, 9, 0, 110)], EVERYONE)
    assert (result.messages, result.expected, result.delivered, result.unexpected) == (1, 0, 0, 1)


def test_receiver_missing_from_membership_is_unexpected() -> None:
    result = run_account(ONE_SEND, [(9, 1, 0, 110)], EVERYONE)
    assert (result.expected, result.delivered, result.unexpected) == (2, 0, 1)


def test_expected_counts_span_chunk_boundaries() -> None:
    # More messages than one chunk of the vectorised count; client 2 leaves part-way.
    n = 5000
    leave = 3000
    times = np.arange(n, dtype=np.int64) * 2
    sends = {
        "client": np.ones(n, dtype=np.int64),
        "seq": np.arange(n),
        "intended_ns": times,
        "sent_ns": times,
        "bytes": np.full(n, 64),
    }
    members: list[Member] = [
        (1, "*", 0, STILL_CONNECTED),
        (2, "*", 0, leave),
        (3, "*", 0, STILL_CONNECTED),
        (4, "r", 0, STILL_CONNECTED),
    ]
    facts = ledger(
        as_table("sends", sends), deliveries_table([]), membership_table(members), SETTLE
    )
    expected = np.where(times + SETTLE <= leave, 2, 1)
    np.testing.assert_array_equal(facts.expected_per_message, expected)


# --- receipts ----------------------------------------------------------------------------


def test_duplicates_are_counted_exactly_and_never_double_count_delivery() -> None:
    receipts = [(2, 1, 0, 130), (2, 1, 0, 110), (2, 1, 0, 120), (3, 1, 0, 115)]
    result = run_account(ONE_SEND, receipts, EVERYONE)
    assert (result.receipts, result.delivered, result.duplicates, result.lost) == (4, 2, 2, 0)
    facts = ledger(
        sends_table(ONE_SEND), deliveries_table(receipts), membership_table(EVERYONE), SETTLE
    )
    # The first receipt of a pair is its earliest, whatever the row order.
    assert facts.receipt_first.tolist() == [False, True, False, True]
    assert facts.delivered_per_message.tolist() == [2]


def test_duplicates_of_an_unexpected_pair_are_duplicates_not_more_unexpected() -> None:
    receipts = [(1, 1, 0, 110), (1, 1, 0, 111), (1, 1, 0, 112)]
    result = run_account(ONE_SEND, receipts, EVERYONE)
    assert (result.delivered, result.unexpected, result.duplicates) == (0, 1, 2)


def test_receipts_by_different_receivers_are_not_duplicates() -> None:
    sends: list[Send] = [(1, 0, 100), (1, 1, 200)]
    receipts = [(2, 1, 0, 110), (3, 1, 0, 110), (2, 1, 1, 210), (3, 1, 1, 210)]
    result = run_account(sends, receipts, EVERYONE)
    assert (result.expected, result.delivered, result.duplicates) == (4, 4, 0)


def _order(seqs: Sequence[int], sender: int = 1, receiver: int = 2) -> list[Receipt]:
    return [(receiver, sender, seq, 1000 + i) for i, seq in enumerate(seqs)]


@pytest.mark.parametrize(
    ("seqs", "expected"),
    [
        ([0, 1, 2, 3], 0),
        ([0, 2, 1, 3], 1),
        ([3, 2, 1, 0], 3),
        ([0, 3, 1, 2], 2),
        ([1, 0, 3, 2], 2),
        ([0, 1, 1, 2], 0),  # a duplicate is not out of order
        ([2, 0, 2, 1], 2),
        ([5], 0),
        ([], 0),
    ],
)
def test_out_of_order_counts_exactly(seqs: list[int], expected: int) -> None:
    assert out_of_order_count(deliveries_table(_order(seqs))) == expected


def test_out_of_order_follows_arrival_time_not_row_order() -> None:
    rows: list[Receipt] = [(2, 1, 3, 400), (2, 1, 2, 300), (2, 1, 1, 200), (2, 1, 0, 100)]
    assert out_of_order_count(deliveries_table(rows)) == 0
    rows = [(2, 1, 0, 400), (2, 1, 1, 300), (2, 1, 2, 200), (2, 1, 3, 100)]
    assert out_of_order_count(deliveries_table(rows)) == 3


def test_out_of_order_pairs_do_not_interfere() -> None:
    # Sender 1 high seqs to receiver 2, sender 3 low seqs to receiver 2, interleaved in time;
    # sender 1 to receiver 3 with low seqs. Each pair on its own is in order.
    rows: list[Receipt] = [
        (2, 1, 100, 1),
        (2, 3, 0, 2),
        (3, 1, 0, 3),
        (2, 1, 101, 4),
        (2, 3, 1, 5),
        (3, 1, 1, 6),
        (2, 1, 102, 7),
        (2, 3, 2, 8),
    ]
    assert out_of_order_count(deliveries_table(rows)) == 0
    # One swap inside one pair, and only that one counts.
    rows[1], rows[4] = (2, 3, 1, 2), (2, 3, 0, 5)
    assert out_of_order_count(deliveries_table(rows)) == 1


def test_out_of_order_with_large_client_ids_and_seqs() -> None:
    big = 2**31 - 1
    rows: list[Receipt] = [(big, big - 1, big, 1), (big, big - 1, 0, 2), (big - 1, big, 5, 3)]
    assert out_of_order_count(deliveries_table(rows)) == 1


def test_late_receipts_are_after_the_drain_deadline_and_still_delivered() -> None:
    sends: list[Send] = [(1, 0, 100), (1, 1, 100), (1, 2, 100), (1, 3, 100)]
    receipts = [(2, 1, 0, 150), (2, 1, 1, 200), (2, 1, 2, 201), (2, 1, 3, 300)]
    members = EVERYONE[:2]
    result = run_account(sends, receipts, members, drain_deadline_ns=200)
    assert (result.late, result.delivered, result.lost) == (2, 4, 0)
    assert run_account(sends, receipts, members, drain_deadline_ns=None).late == 0


def test_negative_latency_is_counted_and_the_receipt_still_delivered() -> None:
    receipts = [(2, 1, 0, 90), (3, 1, 0, 100), (3, 1, 0, 99)]
    result = run_account(ONE_SEND, receipts, EVERYONE)
    assert result.negative_latency == 2  # stamped before the send; at the instant is not
    assert (result.delivered, result.lost, result.duplicates) == (2, 0, 1)


def test_error_frames_are_counted_from_error_rows() -> None:
    kinds = ["error_frame", "closed", "error_frame", "connect_failed", "error_frames"]
    assert run_account(ONE_SEND, [], EVERYONE, errors=kinds).error_frames == 2


def test_receipts_of_unknown_messages_are_not_delivered() -> None:
    receipts = [(2, 1, 99, 0), (2, 7, 0, 0), (2, 1, 0, 110)]
    result = run_account(ONE_SEND, receipts, EVERYONE)
    assert (result.expected, result.delivered, result.lost) == (2, 1, 1)
    assert result.unexpected == 2
    assert result.negative_latency == 0  # no send time to compare with
    facts = ledger(
        sends_table(ONE_SEND), deliveries_table(receipts), membership_table(EVERYONE), SETTLE
    )
    assert facts.receipt_message.tolist() == [-1, -1, 0]
    assert facts.receipt_expected.tolist() == [False, False, True]


def test_receipts_without_any_sends() -> None:
    result = run_account([], [(2, 1, 0, 5), (2, 1, 0, 6)], EVERYONE)
    assert (result.messages, result.expected, result.delivered) == (0, 0, 0)
    assert (result.unexpected, result.duplicates, result.receipts) == (1, 1, 2)


def test_sends_without_membership_expect_nothing() -> None:
    result = run_account(ONE_SEND, [(2, 1, 0, 110)], [])
    assert (result.expected, result.delivered, result.lost, result.unexpected) == (0, 0, 0, 1)


def test_empty_tables_give_zeros() -> None:
    names = ("sends", "deliveries", "membership", "errors")
    sends, deliveries, membership, errors = (empty_table(name) for name in names)
    result = account(sends, deliveries, membership, errors, SETTLE, 0)
    assert result == LossAccount(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert result.loss_rate == 0.0
    assert result.as_dict()["loss_rate"] == 0.0
    facts = ledger(sends, deliveries, membership, SETTLE)
    assert len(facts.expected_per_message) == len(facts.receipt_first) == 0


def test_message_keys_are_distinct_for_distinct_pairs() -> None:
    sender = np.array([0, 1, 0, 2**31 - 1, 2**31 - 1])
    seq = np.array([1, 0, 2**31 - 1, 0, 2**31 - 1])
    assert len(set(message_keys(sender, seq).tolist())) == 5


def test_as_dict_carries_every_count_and_the_rate() -> None:
    result = run_account(ONE_SEND, [(2, 1, 0, 110)], EVERYONE)
    document = result.as_dict()
    assert document["expected"] == 2
    assert document["lost"] == 1
    assert document["loss_rate"] == 0.5


# --- against a naive reference ---------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    account: LossAccount
    expected_per_message: list[int]
    delivered_per_message: list[int]
    receipt_first: list[bool]


def reference(
    sends: Sequence[Send],
    receipts: Sequence[Receipt],
    members: Sequence[Member],
    errors: Sequence[str],
    settle_ns: int,
    deadline: int | None,
) -> Reference:
    """The definitions of fanbench_common/loss.py, written out the slow, obvious way."""
    member = {client: (audience, on, off) for client, audience, on, off in members}
    send_time = {(client, seq): sent for client, seq, sent in sends}

    def is_expected(sender: int, seq: int, receiver: int) -> bool:
        if (sender, seq) not in send_time or sender not in member or receiver not in member:
            return False
        if receiver == sender:
            return False
        sent = send_time[(sender, seq)]
        audience, on, off = member[receiver]
        still_there = off == STILL_CONNECTED or off >= sent + settle_ns
        return audience == member[sender][0] and on <= sent and still_there

    expected_per_message = [
        sum(1 for receiver in member if is_expected(client, seq, receiver))
        for client, seq, _ in sends
    ]

    # Receipts of each (sender, seq, receiver) pair, by arrival (row index breaks ties).
    by_pair: dict[tuple[int, int, int], list[tuple[int, int]]] = defaultdict(list)
    for index, (receiver, sender, seq, received) in enumerate(receipts):
        by_pair[(sender, seq, receiver)].append((received, index))
    receipt_first = [False] * len(receipts)
    for arrivals in by_pair.values():
        receipt_first[min(arrivals)[1]] = True
    delivered_pairs = {pair for pair in by_pair if is_expected(*pair)}
    delivered_per_message = [
        sum(1 for s, q, _ in delivered_pairs if (s, q) == (client, seq)) for client, seq, _ in sends
    ]

    out_of_order = 0
    by_stream: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for index, (receiver, sender, seq, received) in enumerate(receipts):
        by_stream[(sender, receiver)].append((received, index, seq))
    for stream in by_stream.values():
        highest = -1
        for _, _, seq in sorted(stream):
            if seq < highest:
                out_of_order += 1
            highest = max(highest, seq)

    expected = sum(expected_per_message)
    delivered = len(delivered_pairs)
    negative = sum(
        1
        for _, sender, seq, received in receipts
        if (sender, seq) in send_time and received < send_time[(sender, seq)]
    )
    result = LossAccount(
        messages=len(sends),
        expected=expected,
        delivered=delivered,
        lost=expected - delivered,
        duplicates=len(receipts) - len(by_pair),
        out_of_order=out_of_order,
        late=0 if deadline is None else sum(1 for r in receipts if r[3] > deadline),
        unexpected=len(by_pair) - delivered,
        negative_latency=negative,
        error_frames=sum(1 for kind in errors if kind == "error_frame"),
        receipts=len(receipts),
    )
    return Reference(result, expected_per_message, delivered_per_message, receipt_first)


@dataclass(frozen=True)
class RandomLedger:
    sends: list[Send]
    receipts: list[Receipt]
    members: list[Member]
    errors: list[str]
    settle_ns: int
    deadline: int | None


CLIENTS = st.integers(min_value=0, max_value=7)
TIMES = st.integers(min_value=0, max_value=60)


@st.composite
def random_ledgers(draw: st.DrawFn) -> RandomLedger:
    # Membership: some clients never appear (they may still send or receive).
    present = draw(st.lists(CLIENTS, unique=True, max_size=7))
    members: list[Member] = []
    for client in present:
        audience = draw(st.sampled_from(["*", "r0", "r1"]))
        on = draw(TIMES)
        off = draw(st.one_of(st.just(STILL_CONNECTED), st.integers(on, on + 60)))
        members.append((client, audience, on, off))
    # Sends: unique (client, seq), per-sender seqs 0..n.
    sends: list[Send] = []
    for client in draw(st.lists(CLIENTS, unique=True, max_size=6)):
        for seq in range(draw(st.integers(0, 5))):
            sends.append((client, seq, draw(TIMES)))
    # Receipts: every (message, client) gets 0..3 copies at random times (drops,
    # duplicates, receipts by the sender and by strangers), plus unknown messages.
    receipts: list[Receipt] = []
    receivers = sorted({*present, *(s[0] for s in sends), 8})
    for client, seq, sent in sends:
        for receiver in receivers:
            copies = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
            for _ in range(copies):
                receipts.append((receiver, client, seq, sent + draw(st.integers(-5, 40))))
    unknown = st.tuples(CLIENTS, CLIENTS, st.integers(0, 9), TIMES)
    receipts.extend(draw(st.lists(unknown, max_size=4)))
    receipts = draw(st.permutations(receipts))
    errors = draw(st.lists(st.sampled_from(["error_frame", "closed", "send_failed"]), max_size=4))
    settle_ns = draw(st.integers(0, 20))
    deadline = draw(st.one_of(st.none(), st.integers(0, 100)))
    return RandomLedger(sends, receipts, members, errors, settle_ns, deadline)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_ledgers())
def test_account_matches_the_naive_reference(case: RandomLedger) -> None:
    want = reference(
        case.sends, case.receipts, case.members, case.errors, case.settle_ns, case.deadline
    )
    sends = sends_table(case.sends)
    deliveries = deliveries_table(case.receipts)
    membership = membership_table(case.members)
    got = account(
        sends, deliveries, membership, errors_table(case.errors), case.settle_ns, case.deadline
    )
    assert got == want.account
    facts = ledger(sends, deliveries, membership, case.settle_ns)
    assert facts.expected_per_message.tolist() == want.expected_per_message
    assert facts.delivered_per_message.tolist() == want.delivered_per_message
    assert facts.receipt_first.tolist() == want.receipt_first
    # Every receipt is exactly one of: a delivery, an unexpected first receipt, a duplicate.
    assert got.delivered + got.unexpected + got.duplicates == got.receipts
    assert 0 <= got.lost <= got.expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2**31 - 1), TIMES),
        max_size=40,
    )
)
def test_out_of_order_matches_the_naive_reference(rows: list[Receipt]) -> None:
    want = reference([], rows, [], [], 0, None).account.out_of_order
    assert out_of_order_count(deliveries_table(rows)) == want
