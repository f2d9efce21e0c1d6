"""What one Locust process shares among its users: the recorder, the scenario, flags."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent.event

from fanbench_common.scenario import Scenario
from loadtest.recorder import Recorder

CLIENTS_PER_PROCESS = 1_000_000
"""Client ids are ``process * 1,000,000 + n``: unique across workers without coordination."""


@dataclass
class ProcessContext:
    process: int
    scenario: Scenario
    recorder: Recorder
    sending: bool = True
    """Cleared when the test stops sending; receivers keep listening through the drain."""
    sending_stopped: gevent.event.Event = field(default_factory=gevent.event.Event)
    """Set with ``sending`` cleared: wakes senders sleeping until their next send."""
    send_lags_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    scenario_ready: gevent.event.Event = field(default_factory=lambda: _set(gevent.event.Event()))
    """Set once ``scenario`` is the one this process runs. A Locust worker starts with it
    clear: its users wait for the master's scenario before connecting (``loadtest/handoff.py``)."""
    take_seat: Callable[[], str] | None = None
    """A new user's audience, from the swarm-wide seat numbering (``loadtest/seats.py``);
    ``None``: this process numbers its own users."""
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    _seats: itertools.count[int] = field(default_factory=itertools.count)

    def stop_sending(self) -> None:
        self.sending = False
        self.sending_stopped.set()

    def next_user(self) -> tuple[int, int]:
        """(client id, user number within this process)."""
        number = next(self._numbers)
        return self.process * CLIENTS_PER_PROCESS + number, number

    def new_audience(self) -> str:
        """The room (or everyone) a newly created user joins, for the whole of its life."""
        if self.take_seat is not None:
            return self.take_seat()
        return self.scenario.audience_for(next(self._seats))


def _set(event: gevent.event.Event) -> gevent.event.Event:
    event.set()
    return event


_current: ProcessContext | None = None


def install(context: ProcessContext) -> None:
    global _current
    _current = context


def current() -> ProcessContext:
    if _current is None:
        raise RuntimeError('fanbench\'s Locust hooks did not run: use -f "$(fanbench locustfile)"')
    return _current
