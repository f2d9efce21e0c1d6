"""The Locust user in its own process (importing Locust monkey-patches the interpreter).

A user's sending task ends when sending stops, so Locust can stop the user at
once: before, the task slept until its next scheduled send (up to
``--send-interval``) and looped on without sending, so Locust held every run's
shutdown for its whole ``--stop-timeout`` (10 s a run) and then killed the users.

Fan-out receipts reach Locust's statistics a batch at a time, except with
Locust's OpenTelemetry export on, which listens to the request event.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gevent
from locust.env import Environment

from fanbench_common.scenario import Scenario
from loadtest import process_context
from loadtest.process_context import ProcessContext
from loadtest.recorder import Recorder
from loadtest.users import ChatUser


class Socket:
    def send(self, _text: str) -> None:
        pass


context = ProcessContext(0, Scenario(send_interval_s=600.0), Recorder(0))
process_context.install(context)
user = ChatUser(Environment(user_classes=[ChatUser]))
user.socket = Socket()
task = gevent.spawn(user.send_open_loop)
gevent.sleep(0.2)
running_before = not task.dead
context.stop_sending()
task.join(timeout=5)
print(running_before, task.dead, task.exception is None)
"""


def test_the_sending_task_returns_as_soon_as_sending_stops() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # Still waiting for its next send (600 s away) before; finished, cleanly, after.
    assert result.stdout.split() == ["True", "True", "True"], result.stdout + result.stderr


RECEIPTS_PROBE = """
import argparse, sys
from locust.env import Environment

from fanbench_common.scenario import Scenario
from loadtest import process_context
from loadtest.process_context import ProcessContext
from loadtest.recorder import Recorder
from loadtest.users import ChatUser

process_context.install(ProcessContext(0, Scenario(), Recorder(0)))
environment = Environment(user_classes=[ChatUser])
environment.parsed_options = argparse.Namespace(otel=sys.argv[1] == "otel")
fired = []
environment.events.request.add_listener(lambda **kw: fired.append(kw["name"]))
sink = ChatUser(environment)._receipt_sink()
for n in range(3):
    sink(n, 12.5)
print(len(fired))
"""


def _receipt_events_fired(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", RECEIPTS_PROBE, mode],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


def test_receipts_fire_the_request_event_only_for_opentelemetry() -> None:
    assert _receipt_events_fired("otel") == 3
    assert _receipt_events_fired("plain") == 0
