"""A room larger than one worker's users spans workers, and loses nothing (issue 15, item 3).

One real swarm with two Locust workers of six users each and rooms of eight: the
master numbers every user across the swarm (``loadtest/seats.py``), so room r0
holds users of both workers. Every member of a room hears senders on the other
worker, nobody hears another room, and on the fault-free local stage nothing is
lost.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from fanbench_common.loss import ledger
from loadtest.process_context import CLIENTS_PER_PROCESS
from tests.reliability.support import SwarmResult, run_swarm

pytestmark = pytest.mark.timeout(600)

USERS, WORKERS, ROOM_SIZE = 12, 2, 8
ROOMS_SWARM = (
    "--users", str(USERS), "--spawn-rate", "4", "--duration", "10", "--send-interval", "0.5",
    "--warmup", "4", "--drain", "1", "--settle", "1", "--no-report", "--quiet",
    "--workers", str(WORKERS), "--room-size", str(ROOM_SIZE),
)  # fmt: skip


@pytest.fixture(scope="module")
def rooms(tmp_path_factory: pytest.TempPathFactory) -> SwarmResult:
    root: Path = tmp_path_factory.mktemp("rooms-across-workers")
    return run_swarm("rooms-across-workers", root / "run", ROOMS_SWARM).check()


def members_by_room(result: SwarmResult) -> dict[str, list[int]]:
    membership = result.run.membership
    rooms: dict[str, list[int]] = defaultdict(list)
    for client, audience in zip(membership["client"], membership["audience"], strict=True):
        rooms[str(audience)].append(int(client))
    return dict(rooms)


def test_the_master_seats_every_user_and_a_room_spans_both_workers(rooms: SwarmResult) -> None:
    print(rooms.figures())
    assert rooms.run.meta["rooms"] == {
        "seats": USERS,
        "room_size": ROOM_SIZE,
        "by_process": {"0": USERS // WORKERS, "1": USERS // WORKERS},
    }
    by_room = members_by_room(rooms)
    assert sorted(len(members) for members in by_room.values()) == [USERS - ROOM_SIZE, ROOM_SIZE]
    largest = max(by_room.values(), key=len)
    # Eight members and six users per worker: the room cannot fit in one worker.
    assert {client // CLIENTS_PER_PROCESS for client in largest} == {0, 1}


def test_every_member_hears_senders_on_the_other_worker_and_no_other_room(
    rooms: SwarmResult,
) -> None:
    run = rooms.run
    room_of = {c: room for room, members in members_by_room(rooms).items() for c in members}
    receivers, senders = run.deliveries["client"], run.deliveries["sender"]
    crossing = receivers // CLIENTS_PER_PROCESS != senders // CLIENTS_PER_PROCESS
    spanning = 0
    for room, members in members_by_room(rooms).items():
        workers = {m // CLIENTS_PER_PROCESS for m in members}
        if len(workers) < 2:
            continue
        spanning += 1
        for member in members:
            heard = crossing & (receivers == member)
            assert int(np.sum(heard)) > 0, f"{member} in {room} heard no other worker"
    assert spanning >= 1, "no room spans both workers"
    assert all(room_of[int(r)] == room_of[int(s)] for r, s in zip(receivers, senders, strict=True))


def test_nothing_is_lost_on_the_fault_free_stage(rooms: SwarmResult) -> None:
    counts = rooms.counts
    assert counts.expected > 0
    assert counts.lost == 0, rooms.figures()
    assert counts.expected <= counts.messages * (ROOM_SIZE - 1)
    # Unexpected receipts are only the connect race (docs/measurement.md): the stage had the
    # recipient's connection a moment before its client stamped it, after the send.
    run = rooms.run
    facts = ledger(run.sends, run.deliveries, run.membership, int(run.scenario["settle_s"] * 1e9))
    unexpected = np.flatnonzero(facts.receipt_first & ~facts.receipt_expected)
    row_of = {int(c): i for i, c in enumerate(run.membership["client"])}
    for receipt in unexpected:
        receiver = row_of[int(run.deliveries["client"][receipt])]
        sent_ns = run.sends["sent_ns"][facts.receipt_message[receipt]]
        assert run.membership["connected_ns"][receiver] > sent_ns
