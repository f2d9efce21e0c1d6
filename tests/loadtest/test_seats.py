"""Swarm-wide room seats: the master's numbering, and a worker's request over messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gevent
import pytest

from fanbench_common.scenario import GLOBAL_AUDIENCE, Scenario
from loadtest import seats
from loadtest.seats import SEAT, SEAT_REQUEST, MasterSeats, SeatDesk, SeatTimeout, WorkerSeats


def test_seats_interleaved_from_two_workers_fill_one_room_across_both() -> None:
    desk = SeatDesk(Scenario(room_size=8))
    taken = [desk.take(process) for process in [0, 1] * 6]
    assert [seat for seat, _ in taken] == list(range(12))
    room_zero = [i for i, (_, audience) in enumerate(taken) if audience == "r0"]
    assert len(room_zero) == 8
    assert {(i % 2) for i in room_zero} == {0, 1}, "room r0 spans both workers"
    assert desk.as_meta() == {"seats": 12, "room_size": 8, "by_process": {"0": 6, "1": 6}}


def test_without_rooms_every_seat_is_everyone() -> None:
    desk = SeatDesk(Scenario(room_size=0))
    assert {desk.take(p)[1] for p in range(3) for _ in range(5)} == {GLOBAL_AUDIENCE}


@dataclass(frozen=True)
class Message:
    """The fields of Locust's ``rpc.Message`` a handler reads."""

    type: str
    data: Any
    node_id: str


class _Runner:
    """Locust's two ends of a custom message, wired to each other in one process."""

    def __init__(self, deliver: Any, node_id: str = "") -> None:
        self.deliver = deliver
        self.node_id = node_id
        self.sent: list[tuple[str, Any, str | None]] = []

    def send_message(self, msg_type: str, data: Any = None, client_id: str | None = None) -> None:
        self.sent.append((msg_type, data, client_id))
        if self.deliver is not None:
            gevent.spawn(self.deliver, msg_type, data, client_id)


class _Environment:
    def __init__(self, runner: _Runner) -> None:
        self.runner = runner


def test_a_worker_gets_its_audience_from_the_master() -> None:
    master = MasterSeats(SeatDesk(Scenario(room_size=2)))
    workers: dict[str, WorkerSeats] = {}

    def to_worker(msg_type: str, data: Any, client_id: str | None) -> None:
        assert msg_type == SEAT
        assert client_id is not None
        workers[client_id].on_seat(None, Message(msg_type, data, client_id))

    master_env = _Environment(_Runner(to_worker))

    def to_master_from(node: str) -> Any:
        def deliver(msg_type: str, data: Any, _: str | None) -> None:
            assert msg_type == SEAT_REQUEST
            master.on_request(master_env, Message(msg_type, data, node))

        return deliver

    for process, node in enumerate(("node-a", "node-b")):
        workers[node] = WorkerSeats(_Environment(_Runner(to_master_from(node))), process)
    audiences = [workers[node].take() for node in ("node-a", "node-b", "node-a", "node-b")]
    assert audiences == ["r0", "r0", "r1", "r1"]
    assert master.desk.by_process == {0: 2, 1: 2}
    # Each answer went to the worker that asked, not to every worker.
    assert [client for _, _, client in master_env.runner.sent] == ["node-a", "node-b"] * 2


def test_a_master_that_never_answers_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seats, "SEAT_TIMEOUT_S", 0.2)
    worker = WorkerSeats(_Environment(_Runner(None)), 3)
    with pytest.raises(SeatTimeout, match="did not assign worker 3 a room seat"):
        worker.take()
    assert worker._waiting == {}
