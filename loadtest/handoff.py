"""The master hands its scenario, target and token to each worker; workers report what they ran.

Locust carries custom arguments to workers inside its spawn message and fires
``test_start`` with it, but a worker whose start-up yields (``platform.platform()``
runs ``uname -p`` in a subprocess, a gevent switch) can take that spawn before
fanbench's listeners exist: its users then sent with the default scenario
(issue 21: a run asked for 200-byte messages and measured some at 64). So the
scenario travels in fanbench's own message, a worker asks for it once its
handler is registered, its users wait for it before connecting, and every
record batch says which scenario its sends came from. The master compares:
a worker that ran anything else fails the run.

Pure rules here; the Locust wiring is in ``loadtest/coordination.py``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fanbench_common.scenario import Scenario

SCENARIO, SCENARIO_REQUEST = "fanbench_scenario", "fanbench_scenario_request"
SCENARIO_WAIT_S = 120.0
"""How long a worker's user waits for the master's scenario before giving up (and the run
fails: the worker reports that it never had one)."""
SCENARIO_DELAY_ENV = "FANBENCH_TEST_SCENARIO_DELAY_S"
"""Test hook: the master holds the hand-off back this many seconds after the test starts,
so a test can show that no worker sends before it has the master's scenario."""
NO_SCENARIO = "never received the master's scenario"


def handoff(scenario: Scenario, target: str) -> dict[str, Any]:
    """The message body: every field of the scenario (the token included) and the target."""
    return {"scenario": asdict(scenario), "target": target}


def applied(message: dict[str, Any]) -> tuple[Scenario, str]:
    """What a worker applies from the master's message."""
    return Scenario(**message["scenario"]), str(message["target"])


def ran(scenario: Scenario, target: str) -> dict[str, Any]:
    """What a worker reports it ran, for run.json: the token redacted, as everywhere."""
    return {"scenario": scenario.as_metadata(), "target": target}


def mismatches(
    expected: dict[str, Any], reported: dict[int, list[dict[str, Any]]], sent: set[int]
) -> dict[int, str]:
    """Workers whose sends did not all come from ``expected`` (the master's ``ran``), each with
    why. ``reported``: each worker's distinct reports; ``sent``: workers with send records."""
    found: dict[int, str] = {}
    for process in sorted(set(reported) | sent):
        runs = reported.get(process, [])
        others = [r for r in runs if r != expected]
        if not runs:
            found[process] = NO_SCENARIO
        elif others:
            found[process] = "ran " + "; ".join(_difference(expected, r) for r in others)
    return found


def _difference(expected: dict[str, Any], other: dict[str, Any]) -> str:
    want, got = _flat(expected), _flat(other)
    return ", ".join(
        f"{key}={got.get(key)!r} (master: {want.get(key)!r})"
        for key in sorted(set(want) | set(got))
        if want.get(key) != got.get(key)
    )


def _flat(report: dict[str, Any]) -> dict[str, Any]:
    return {**report.get("scenario", {}), "target": report.get("target")}
