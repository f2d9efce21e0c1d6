"""Locust event wiring: record shipping, clock offsets, the end-of-test handshake, progress.

Locust's master waits only 0.5 s for workers' final reports at quit (locust
issue #1426), so records never ride on those reports. Instead, when a test
stops the master (or the single local process):

1. tells every process to stop sending, and measures the workers' clocks again;
2. waits the drain window while receivers keep stamping (receipts after it are
   *late*), then keeps waiting until no receipt has arrived for a quiet window:
   a saturated stage finishes its queued fan-outs long after the last send, and
   a slow fan-out is not a lost one (bounded by ``drain_limit_s``);
3. asks each worker to flush and waits for its acknowledgement, which comes
   after its last record batch (messages on one connection stay in order); a
   worker that Locust reports missing is not waited for, and is named;
4. writes the run directory, moving every record onto the master's clock.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import gevent
import gevent.event
from locust import events
from locust.runners import STATE_MISSING, LocalRunner, MasterRunner, WorkerRunner

from fanbench_common.rundir import Run, as_table, default_run_dir
from fanbench_common.scenario import TOKEN_ENV, Scenario, add_knob_arguments
from loadtest import handoff, health, process_context, run_context
from loadtest.clock import UNMEASURED, ClockFit, ClockSample, fit
from loadtest.distributed import hostname
from loadtest.live_records import RunningLedger, live_run, loss_horizon_ns
from loadtest.process_context import ProcessContext
from loadtest.recorder import Collector, Recorder
from loadtest.seats import SEAT, SEAT_REQUEST, MasterSeats, SeatDesk, WorkerSeats

SHIP_INTERVAL_S = 1.0
FLUSH_TIMEOUT_S = 30.0
PING_ROUNDS = 20
PROGRESS_INTERVAL_S = 1.0
PROGRESS_LOSS_ROW_LIMIT = 2_000_000
PROGRESS_BUSY_FACTOR = 4
"""The running ledger takes at most about a fifth of the master's time."""
QUIET_S = 2.0
"""No new receipt for this long after the drain window: the fan-outs have finished."""
POLL_S = 0.1

RECORDS, FLUSH, FLUSHED, CONTROL, PING, PONG = (
    "fanbench_records", "fanbench_flush", "fanbench_flushed", "fanbench_control",
    "fanbench_ping", "fanbench_pong",
)  # fmt: skip


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("fanbench", "locust", "websockets", "boto3", "numpy", "moto"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def host_info() -> dict[str, Any]:
    return {
        "hostname": hostname(dict(os.environ)),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }


class MasterState:
    """The master's (or the single local process's) side of a test."""

    def __init__(self, environment: Any, scenario: Scenario, local: ProcessContext | None) -> None:
        self.environment = environment
        self.scenario = scenario
        self.local = local
        self.collector = Collector()
        self.seats = SeatDesk(scenario)
        self.flushed: set[int] = set()
        self.workers_seen: set[int] = set()
        self.worker_hosts: dict[int, dict[str, Any]] = {}
        self.last_heard_ns: dict[int, int] = {}
        self._pings: dict[int, dict[str, list[ClockSample]]] = {}
        self.started_ns = 0
        self.stop_sending_ns = 0
        self.drain: dict[str, Any] = {}
        self.missing: dict[int, dict[str, int]] = {}
        self.run_dir = Path(scenario.run_dir) if scenario.run_dir else default_run_dir()
        self._written = False
        self.running_ledger: RunningLedger | None = None
        """Counts each second's losses for the progress line; plugged in by the application
        (``fanbench/locust_ledger.py``, which also shows its figures in Locust)."""
        self.handed_off: dict[str, Any] | None = None
        """The scenario message once sent to every worker; a worker that asks later gets it."""
        self.ran_by_process: dict[int, list[dict[str, Any]]] = {}
        self.scenario_mismatches: dict[int, str] = {}

    # -- messages from workers ---------------------------------------------------

    def on_records(self, environment: Any, msg: Any, **_: Any) -> None:
        process = int(msg.data["process"])
        self.workers_seen.add(process)
        self.last_heard_ns[process] = time.time_ns()
        if "host" in msg.data:
            self.worker_hosts[process] = dict(msg.data["host"])
        for report in msg.data.get("ran", []):
            reports = self.ran_by_process.setdefault(process, [])
            if report not in reports:
                reports.append(report)
        self.collector.add(msg.data)

    # -- the scenario hand-off (loadtest/handoff.py) ------------------------------------

    def hand_off(self) -> None:
        """Send every worker the scenario, target and token; their users wait for it."""
        delay_s = float(os.environ.get(handoff.SCENARIO_DELAY_ENV) or 0)
        if delay_s > 0:
            gevent.sleep(delay_s)
        self.handed_off = handoff.handoff(self.scenario, self.environment.host or "")
        self.environment.runner.send_message(handoff.SCENARIO, self.handed_off)

    def on_scenario_request(self, environment: Any, msg: Any, **_: Any) -> None:
        # Before the hand-off, the broadcast will reach this worker: its handler is registered.
        if self.handed_off is not None:
            environment.runner.send_message(handoff.SCENARIO, self.handed_off, msg.node_id)

    def expected_ran(self) -> dict[str, Any]:
        return handoff.ran(self.scenario, self.environment.host or "")

    def check_scenarios(self) -> None:
        """A worker whose sends did not all come from the master's scenario fails the run."""
        if self.local is not None:
            return
        sent = {p for p, rows in self.collector.rows_by_process.items() if rows.get("sends")}
        self.scenario_mismatches = handoff.mismatches(
            self.expected_ran(), self.ran_by_process, sent
        )
        for process, why in self.scenario_mismatches.items():
            print(
                f"fanbench: ERROR: worker {process} did not run the master's scenario: {why}",
                file=sys.stderr, flush=True,
            )  # fmt: skip

    def on_flushed(self, environment: Any, msg: Any, **_: Any) -> None:
        self.flushed.add(int(msg.data["process"]))

    def on_pong(self, environment: Any, msg: Any, **_: Any) -> None:
        received_ns = time.time_ns()
        process, sent_ns, worker_ns = (int(msg.data[k]) for k in ("process", "t0", "worker_ns"))
        phases = self._pings.setdefault(process, {"start": [], "stop": []})
        phases[str(msg.data.get("phase", "start"))].append(
            ClockSample(sent_ns, received_ns, worker_ns)
        )

    def measure_clocks(self, phase: str = "start") -> None:
        """NTP-style ping exchanges; ``fit`` keeps each phase's lowest round trip."""
        runner = self.environment.runner
        for _ in range(PING_ROUNDS):
            runner.send_message(PING, {"t0": time.time_ns(), "phase": phase})
            gevent.sleep(0.1)

    def clock_fits(self) -> dict[int, ClockFit | None]:
        """Every process with records or samples; ``None``: never measured (its offset is
        unknown, and run.json says so). The single local process is the master's clock."""
        if self.local is not None:
            return {}
        processes = set(self._pings) | set(self.collector.rows_by_process)
        return {
            p: fit(self._pings.get(p, {}).get("start", []), self._pings.get(p, {}).get("stop", []))
            for p in processes
        }

    def clock_meta(self, fits: dict[int, ClockFit | None]) -> dict[str, Any]:
        if self.local is not None:
            return {str(self.local.process): {"measured": True, "same_clock": True, "samples": 0,
                                              "offset_ns": 0, "uncertainty_ns": 0}}  # fmt: skip
        return {str(p): (UNMEASURED if f is None else f.as_meta()) for p, f in fits.items()}

    # -- end of test -----------------------------------------------------------------

    def stop_sending(self) -> None:
        self.stop_sending_ns = time.time_ns()
        if self.local is not None:
            self.local.stop_sending()
        else:
            self.environment.runner.send_message(CONTROL, {"sending": False})

    def receipts_so_far(self) -> int:
        """Receipts recorded (local) or reported by the workers' latest batches."""
        if self.local is not None:
            return self.local.recorder.received
        return sum(c.get("receipts", 0) for c in self.collector.counters.values())

    def wait_for_quiet(self, last_change: tuple[int, int]) -> dict[str, Any]:
        """After the drain window: wait until no receipt has arrived for ``QUIET_S`` (plus one
        shipping interval when workers report), or until ``drain_limit_s`` after the stop.

        ``last_change`` is (receipts, when that count was first seen) as watched since the
        stop: the quiet window runs from the last receipt, so a drain window that was
        already quiet counts towards it."""
        quiet_ns = int((QUIET_S + (0 if self.local is not None else SHIP_INTERVAL_S)) * 1e9)
        limit_ns = self.stop_sending_ns + int(self.scenario.drain_limit_s * 1e9)
        seen, changed_ns = last_change
        while True:
            now = time.time_ns()
            if now - changed_ns >= quiet_ns or now >= limit_ns:
                break
            gevent.sleep(POLL_S)
            seen, changed_ns = self._watch_receipts(seen, changed_ns)
        return {
            "quiet_s": quiet_ns / 1e9,
            "limit_s": self.scenario.drain_limit_s,
            "last_receipt_seen_ns": changed_ns,
            "settled": time.time_ns() - changed_ns >= quiet_ns,
        }

    def _watch_receipts(self, seen: int, changed_ns: int) -> tuple[int, int]:
        count = self.receipts_so_far()
        return (count, time.time_ns()) if count != seen else (seen, changed_ns)

    def _drain(self) -> tuple[int, int]:
        """Sleep through the drain window, watching for receipts; (receipts, when last
        changed)."""
        last_change = (self.receipts_so_far(), time.time_ns())
        until = time.monotonic() + self.scenario.drain_s
        while (left := until - time.monotonic()) > 0:
            gevent.sleep(min(POLL_S, left))
            last_change = self._watch_receipts(*last_change)
        return last_change

    def _unresponsive(self) -> set[int]:
        """Workers Locust has marked missing (no heartbeat): not worth waiting for."""
        runner = self.environment.runner
        return {
            runner.get_worker_index(worker.id)
            for worker in runner.clients.all
            if worker.state == STATE_MISSING
        }

    def collect(self) -> bool:
        """Pull every remaining record; ``True`` when every worker acknowledged."""
        if self.local is not None:
            while True:
                batch = self.local.recorder.take_batch(final=True)
                self.collector.add(batch)
                if not batch["has_more"]:
                    return True
        runner = self.environment.runner
        expected = {runner.get_worker_index(worker.id) for worker in runner.clients.all}
        expected |= self.workers_seen
        runner.send_message(FLUSH, {})
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while time.monotonic() < deadline and not expected <= self.flushed | self._unresponsive():
            gevent.sleep(0.05)
        for process in sorted(expected - self.flushed):
            rows = self.collector.rows_by_process.get(process, {})
            counters = self.collector.counters.get(process, {})
            self.missing[process] = {
                "sends": rows.get("sends", 0),
                "receipts": rows.get("deliveries", 0),
                "clients": counters.get("clients", 0),
                "last_heard_ns": self.last_heard_ns.get(process, 0),
            }
        return expected <= self.flushed

    def finish(self) -> None:
        if self._written or not self.started_ns:
            return
        self._written = True
        self.stop_sending()
        clocks = None
        if self.local is None:
            clocks = gevent.spawn(self.measure_clocks, "stop")
        last_change = self._drain()
        drain_deadline_ns = time.time_ns()
        self.drain = self.wait_for_quiet(last_change)
        if clocks is not None:
            clocks.join(timeout=PING_ROUNDS * 0.1 + 5)
        complete = self.collect()
        self.check_scenarios()
        self.write(drain_deadline_ns, complete)

    def meta(
        self, drain_deadline_ns: int, complete: bool, fits: dict[int, ClockFit | None]
    ) -> dict[str, Any]:
        options = self.environment.parsed_options
        return {
            "scenario": {
                **self.scenario.as_metadata(),
                "users": getattr(options, "num_users", None),
                "spawn_rate": getattr(options, "spawn_rate", None),
                "run_time_s": getattr(options, "run_time", None),
                "processes": max(1, len(self.workers_seen)),
            },
            "target": self.environment.host,
            "variant": self.scenario.variant,
            "versions": versions(),
            "host": host_info(),
            "worker_hosts": {str(p): h for p, h in sorted(self.worker_hosts.items())},
            "scenario_by_process": {str(p): r for p, r in sorted(self.ran_by_process.items())},
            "times": {
                "start_ns": self.started_ns,
                "stop_sending_ns": self.stop_sending_ns,
                "drain_deadline_ns": drain_deadline_ns,
                "end_ns": time.time_ns(),
            },
            "drain": self.drain,
            "rooms": self.seats.as_meta(),
            "clock_offsets": self.clock_meta(fits),
            "collection": {
                "complete": complete,
                "rows": self.collector.rows,
                "rows_by_process": {str(p): r for p, r in self.collector.rows_by_process.items()},
                "missing_processes": {str(p): m for p, m in self.missing.items()},
                "scenario_mismatches": {str(p): w for p, w in self.scenario_mismatches.items()},
            },
            **run_context.run_json_part(os.environ.get(run_context.RUN_CONTEXT_ENV)),
        }

    def write(self, drain_deadline_ns: int, complete: bool) -> None:
        fits = self.clock_fits()
        # A missing worker's clients left with it: their memberships end when it was last heard.
        ended = {p: m["last_heard_ns"] for p, m in self.missing.items() if m["last_heard_ns"]}
        path = self.collector.write(
            self.run_dir, self.meta(drain_deadline_ns, complete, fits), fits, ended
        )
        print(f"fanbench: run directory {path}", file=sys.stderr, flush=True)

    # -- live progress -----------------------------------------------------------------

    def absorb_local_forever(self) -> None:
        """In single-process mode, move records to the collector as a worker would ship them."""
        assert self.local is not None
        while not self._written:
            gevent.sleep(SHIP_INTERVAL_S)
            if not self._written:
                self.collector.add(self.local.recorder.take_batch())

    def progress(self) -> dict[str, Any]:
        rows = self.collector.rows
        sent, received = rows["sends"], rows["deliveries"]
        lost: int | None = None
        if self.running_ledger is not None and sum(rows.values()) < PROGRESS_LOSS_ROW_LIMIT:
            lost = self.running_ledger(*self.records_so_far())
        runner = self.environment.runner
        return {
            "elapsed_s": (time.time_ns() - self.started_ns) / 1e9 if self.started_ns else 0.0,
            "users": runner.user_count if runner else 0,
            "sent": sent,
            "delivered": received,
            "lost": lost,
        }

    def records_so_far(self) -> tuple[Run, int]:
        """The records so far and the loss horizon: a delivery is lost once its message's drain
        window has passed."""
        tables = self.collector.tables(self.clock_fits())
        now = time.time_ns()
        drain_ns = int(self.scenario.drain_s * 1e9)
        run = live_run(
            {name: as_table(name, table) for name, table in tables.items()},
            self.scenario.as_metadata(), self.started_ns, now, self.stop_sending_ns,
            self.stop_sending_ns + drain_ns if self.stop_sending_ns else None,
        )  # fmt: skip
        scenario = self.scenario
        return run, loss_horizon_ns(now, scenario.drain_s, scenario.settle_s, SHIP_INTERVAL_S)

    @property
    def written(self) -> bool:
        return self._written

    def write_progress_forever(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        target = self.run_dir / "progress.json"
        pause_s = PROGRESS_INTERVAL_S
        while not self._written:
            gevent.sleep(pause_s)
            began = time.perf_counter()
            staging = target.with_suffix(".tmp")
            staging.write_text(json.dumps(self.progress()))
            staging.replace(target)
            # The ledger blocks this process's greenlets (the users', in one process): a
            # large run refreshes it less often rather than starving the receivers.
            pause_s = max(PROGRESS_INTERVAL_S, PROGRESS_BUSY_FACTOR * (time.perf_counter() - began))


class WorkerState:
    def __init__(self, environment: Any, context: ProcessContext) -> None:
        self.environment = environment
        self.context = context
        self.ran: list[dict[str, Any]] = []
        """Every scenario this worker's users ran with, as ``handoff.ran`` reports it."""

    @cached_property
    def host(self) -> dict[str, Any]:
        # Not at init: platform.platform() runs ``uname -p`` in a subprocess, a gevent switch,
        # and messages that arrive during a switch in init find no handler registered yet.
        return host_info()

    def on_scenario(self, environment: Any, msg: Any, **_: Any) -> None:
        scenario, target = handoff.applied(msg.data)
        self.context.scenario = scenario
        environment.host = target
        for user_class in environment.runner.user_classes:
            user_class.host = target
        report = handoff.ran(scenario, target)
        if report not in self.ran:
            self.ran.append(report)
        self.context.scenario_ready.set()

    def request_scenario(self) -> None:
        self.environment.runner.send_message(
            handoff.SCENARIO_REQUEST, {"process": self.context.process}
        )

    def ship_forever(self) -> None:
        while True:
            gevent.sleep(SHIP_INTERVAL_S)
            self.ship(final=False)

    def ship(self, final: bool) -> None:
        recorder = self.context.recorder
        while True:
            batch = recorder.take_batch(final=final)
            batch["host"] = self.host
            batch["ran"] = self.ran
            self.environment.runner.send_message(RECORDS, batch)
            if not batch["has_more"]:
                return

    def on_flush(self, environment: Any, msg: Any, **_: Any) -> None:
        self.ship(final=True)
        environment.runner.send_message(FLUSHED, {"process": self.context.process})

    def on_control(self, environment: Any, msg: Any, **_: Any) -> None:
        if not msg.data.get("sending", True):
            self.context.stop_sending()

    def on_ping(self, environment: Any, msg: Any, **_: Any) -> None:
        environment.runner.send_message(
            PONG,
            {
                "process": self.context.process,
                "t0": msg.data["t0"],
                "phase": msg.data.get("phase", "start"),
                "worker_ns": self.context.recorder.now_ns(),
            },
        )


MasterPlugin = Callable[[Any, MasterState], None]
"""Called with Locust's environment and the master's state once the master's own listeners are
registered: its ``test_stopping`` listeners then run after the run directory is written."""


def install_hooks(master_plugins: Sequence[MasterPlugin] = ()) -> None:
    """Register fanbench's Locust event handlers (called from the locustfile, which names the
    application's plugins for the master: the load generator knows no report)."""

    @events.init_command_line_parser.add_listener
    def _arguments(parser: Any) -> None:
        add_knob_arguments(parser, locust=True)
        parser.add_argument("--run-dir", type=str, default="", include_in_web_ui=True,
                            help="where the master writes the run directory")  # fmt: skip
        parser.add_argument("--token", type=str, default="", is_secret=True, env_var=TOKEN_ENV,
                            include_in_web_ui=True, help="?token= for $connect")  # fmt: skip

    @events.init.add_listener
    def _init(environment: Any, **_: Any) -> None:
        runner = environment.runner
        scenario = Scenario.from_options(environment.parsed_options)
        if isinstance(runner, WorkerRunner):
            context = ProcessContext(
                runner.worker_index, scenario, Recorder(runner.worker_index),
                scenario_ready=gevent.event.Event(),
            )  # fmt: skip
            seats = WorkerSeats(environment, context.process)
            context.take_seat = seats.take
            process_context.install(context)
            worker = WorkerState(environment, context)
            runner.register_message(SEAT, seats.on_seat)
            runner.register_message(FLUSH, worker.on_flush, concurrent=True)
            runner.register_message(CONTROL, worker.on_control)
            runner.register_message(PING, worker.on_ping)
            runner.register_message(handoff.SCENARIO, worker.on_scenario)
            # Now that the handler exists: a hand-off sent before it was lost, so ask.
            worker.request_scenario()
            gevent.spawn(worker.ship_forever)
            gevent.spawn(health.sample_forever, context)
            return
        local = None
        if isinstance(runner, LocalRunner):
            local = ProcessContext(0, scenario, Recorder(0))
            process_context.install(local)
            gevent.spawn(health.sample_forever, local)
        master = MasterState(environment, scenario, local)
        if local is not None:
            local.take_seat = lambda: master.seats.take(0)[1]
        if isinstance(runner, MasterRunner):
            runner.register_message(SEAT_REQUEST, MasterSeats(master.seats).on_request)
            runner.register_message(RECORDS, master.on_records)
            runner.register_message(FLUSHED, master.on_flushed)
            runner.register_message(PONG, master.on_pong)
            runner.register_message(handoff.SCENARIO_REQUEST, master.on_scenario_request)

        @events.test_start.add_listener
        def _started(environment: Any, **_: Any) -> None:
            if master.started_ns:
                return
            master.started_ns = time.time_ns()
            if isinstance(environment.runner, MasterRunner):
                gevent.spawn(master.hand_off)
                gevent.spawn(master.measure_clocks)
            else:
                gevent.spawn(master.absorb_local_forever)
            gevent.spawn(master.write_progress_forever)

        @events.test_stopping.add_listener
        def _stopping(environment: Any, **_: Any) -> None:
            master.finish()

        # After ``_stopping``: a plugin's final figures come from the run directory it writes.
        for plugin in master_plugins:
            plugin(environment, master)
