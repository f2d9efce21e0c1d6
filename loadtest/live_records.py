"""The Locust master's records so far, as a ``Run``, and the hook that reads a ledger from them.

The load generator holds the records while a test runs but does not analyse them: the running
ledger (loss, duplicates, lateness counted as the report counts them) is the application's
(``fanbench/live_ledger.py``), plugged into the master through ``RunningLedger``. Without one,
progress shows no loss figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from fanbench_common.rundir import Run, Table


class RunningLedger(Protocol):
    """Called about once a second with the records so far and the loss horizon; returns the
    deliveries lost so far (``fanbench run``'s progress line shows them)."""

    def __call__(self, run: Run, horizon_ns: int) -> int: ...


def loss_horizon_ns(now_ns: int, drain_s: float, settle_s: float, ship_interval_s: float) -> int:
    """Messages sent before this instant have had their whole drain window (and settle window,
    and time for workers' records to reach the master): a missing delivery of one is lost."""
    wait_s = max(drain_s, settle_s) + 2 * ship_interval_s
    return now_ns - int(wait_s * 1e9)


def live_run(
    tables: dict[str, Table],
    scenario: dict[str, Any],
    start_ns: int,
    now_ns: int,
    stop_sending_ns: int = 0,
    drain_deadline_ns: int | None = None,
    path: Path = Path("."),
) -> Run:
    """The records so far as a ``Run``, the shape a written run directory reads back as."""
    times: dict[str, Any] = {
        "start_ns": start_ns,
        "stop_sending_ns": stop_sending_ns or now_ns,
        "end_ns": now_ns,
    }
    if drain_deadline_ns is not None:
        times["drain_deadline_ns"] = drain_deadline_ns
    return Run(
        path=path,
        meta={"scenario": scenario, "times": times},
        sends=tables["sends"],
        deliveries=tables["deliveries"],
        membership=tables["membership"],
        errors=tables["errors"],
        health=tables["health"],
    )
