"""Room seats across the swarm: the master numbers every user, so one room spans workers.

Locust's dispatch tells each worker only how many users to run; no worker knows
another's. So a user asks for its seat when it is created: in a single process
the process numbers its own users; on a worker the request goes to the master
over Locust's custom messages and the user waits for the answer (at most
``SEAT_TIMEOUT_S``). The master hands seats out in the order requests arrive, so
room ``r0`` is the first ``room_size`` users spawned anywhere in the swarm,
whichever workers and hosts they run on. The audience a user records in its
membership rows is the master's answer, so the loss accounting, which groups
members by audience across every process, needs nothing else.
"""

from __future__ import annotations

import itertools
from typing import Any

import gevent
from gevent.event import AsyncResult

from fanbench_common.errors import FanbenchError
from fanbench_common.scenario import Scenario

SEAT_REQUEST, SEAT = "fanbench_seat_request", "fanbench_seat"
SEAT_TIMEOUT_S = 30.0
"""A user waits this long for the master's answer before its worker gives up on it."""


class SeatDesk:
    """The master's numbering (pure): seat n of the swarm sits in room ``n // room_size``."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._next = 0
        self.by_process: dict[int, int] = {}

    def take(self, process: int) -> tuple[int, str]:
        """The next seat and its audience, counted against ``process``."""
        seat = self._next
        self._next += 1
        self.by_process[process] = self.by_process.get(process, 0) + 1
        return seat, self.scenario.audience_for(seat)

    def as_meta(self) -> dict[str, Any]:
        """For run.json: how many seats each process's users took."""
        return {
            "seats": self._next,
            "room_size": self.scenario.room_size,
            "by_process": {str(p): n for p, n in sorted(self.by_process.items())},
        }


class MasterSeats:
    """The master's side: answer each worker's request on that worker alone."""

    def __init__(self, desk: SeatDesk) -> None:
        self.desk = desk

    def on_request(self, environment: Any, msg: Any, **_: Any) -> None:
        seat, audience = self.desk.take(int(msg.data["process"]))
        environment.runner.send_message(
            SEAT,
            {"request": msg.data["request"], "seat": seat, "audience": audience},
            client_id=msg.node_id,
        )


class SeatTimeout(FanbenchError, RuntimeError):
    """The master did not answer a seat request in time."""


class WorkerSeats:
    """A worker's side: ask the master, wait for the answer."""

    def __init__(self, environment: Any, process: int) -> None:
        self.environment = environment
        self.process = process
        self._requests = itertools.count()
        self._waiting: dict[int, AsyncResult] = {}

    def take(self) -> str:
        request = next(self._requests)
        answer = AsyncResult()
        self._waiting[request] = answer
        try:
            self.environment.runner.send_message(
                SEAT_REQUEST, {"process": self.process, "request": request}
            )
            reply: dict[str, Any] = answer.get(timeout=SEAT_TIMEOUT_S)
        except gevent.Timeout:
            raise SeatTimeout(
                f"the master did not assign worker {self.process} a room seat within "
                f"{SEAT_TIMEOUT_S:.0f} s (is it running fanbench's locustfile?)"
            ) from None
        finally:
            self._waiting.pop(request, None)
        return str(reply["audience"])

    def on_seat(self, environment: Any, msg: Any, **_: Any) -> None:
        answer = self._waiting.get(int(msg.data["request"]))
        if answer is not None:
            answer.set(msg.data)
