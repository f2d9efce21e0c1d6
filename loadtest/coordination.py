"""Locust event wiring: record shipping, clock offsets, the end-of-test handshake, progress.

Locust's master waits only 0.5 s for workers' final reports at quit (locust
issue #1426), so records never ride on those reports. Instead, when a test
stops the master (or the single local process):

1. tells every process to stop sending;
2. waits the drain window while receivers keep stamping;
3. asks each worker to flush and waits for its acknowledgement, which comes
   after its last record batch (messages on one connection stay in order);
4. writes the run directory.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from fanbench_common.scenario import TOKEN_ENV, Scenario, add_knob_arguments
from loadtest import health, process_context
from loadtest.process_context import ProcessContext
from loadtest.recorder import Collector, Recorder
from reports.loss import account
from reports.rundir import as_table, default_run_dir

SHIP_INTERVAL_S = 1.0
FLUSH_TIMEOUT_S = 30.0
PING_ROUNDS = 20
PROGRESS_INTERVAL_S = 1.0
PROGRESS_LOSS_ROW_LIMIT = 2_000_000

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
        "hostname": socket.gethostname(),
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
        self.flushed: set[int] = set()
        self.workers_seen: set[int] = set()
        self.clock: dict[int, dict[str, int]] = {}
        self._pings: dict[int, list[tuple[int, int]]] = {}
        self.started_ns = 0
        self.stop_sending_ns = 0
        self.run_dir = Path(scenario.run_dir) if scenario.run_dir else default_run_dir()
        self._written = False

    # -- messages from workers ---------------------------------------------------

    def on_records(self, environment: Any, msg: Any, **_: Any) -> None:
        self.workers_seen.add(int(msg.data["process"]))
        self.collector.add(msg.data)

    def on_flushed(self, environment: Any, msg: Any, **_: Any) -> None:
        self.flushed.add(int(msg.data["process"]))

    def on_pong(self, environment: Any, msg: Any, **_: Any) -> None:
        received_ns = time.time_ns()
        process, sent_ns, worker_ns = (int(msg.data[k]) for k in ("process", "t0", "worker_ns"))
        self._pings.setdefault(process, []).append(
            (received_ns - sent_ns, worker_ns - (sent_ns + received_ns) // 2)
        )
        rtt, offset = min(self._pings[process])
        self.clock[process] = {
            "offset_ns": offset,
            "uncertainty_ns": rtt // 2,
            "samples": len(self._pings[process]),
        }
        self.collector.offsets_ns[process] = offset

    def measure_clocks(self) -> None:
        """NTP-style ping exchange; the lowest round trip gives the tightest offset."""
        runner = self.environment.runner
        for _ in range(PING_ROUNDS):
            runner.send_message(PING, {"t0": time.time_ns()})
            gevent.sleep(0.1)

    # -- end of test -----------------------------------------------------------------

    def stop_sending(self) -> None:
        self.stop_sending_ns = time.time_ns()
        if self.local is not None:
            self.local.sending = False
        else:
            self.environment.runner.send_message(CONTROL, {"sending": False})

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
        while time.monotonic() < deadline and not expected <= self.flushed:
            gevent.sleep(0.05)
        return expected <= self.flushed

    def finish(self) -> None:
        if self._written or not self.started_ns:
            return
        self._written = True
        self.stop_sending()
        gevent.sleep(self.scenario.drain_s)
        drain_deadline_ns = time.time_ns()
        complete = self.collect()
        self.write(drain_deadline_ns, complete)

    def meta(self, drain_deadline_ns: int, complete: bool) -> dict[str, Any]:
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
            "times": {
                "start_ns": self.started_ns,
                "stop_sending_ns": self.stop_sending_ns,
                "drain_deadline_ns": drain_deadline_ns,
                "end_ns": time.time_ns(),
            },
            "clock_offsets": {str(p): c for p, c in self.clock.items()},
            "collection": {
                "complete": complete,
                "rows": self.collector.rows,
                "rows_by_process": {str(p): r for p, r in self.collector.rows_by_process.items()},
            },
        }

    def write(self, drain_deadline_ns: int, complete: bool) -> None:
        path = self.collector.write(self.run_dir, self.meta(drain_deadline_ns, complete))
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
        if sum(rows.values()) < PROGRESS_LOSS_ROW_LIMIT:
            tables = self.collector.tables()
            settle_ns = int(self.scenario.settle_s * 1e9)
            horizon = time.time_ns() - settle_ns - int(2 * SHIP_INTERVAL_S * 1e9)
            sends = as_table("sends", tables["sends"])
            old = sends["sent_ns"] < horizon
            settled = {column: values[old] for column, values in sends.items()}
            lost = account(
                settled, as_table("deliveries", tables["deliveries"]),
                as_table("membership", tables["membership"]), as_table("errors", tables["errors"]),
                settle_ns,
            ).lost  # fmt: skip
        runner = self.environment.runner
        return {
            "elapsed_s": (time.time_ns() - self.started_ns) / 1e9 if self.started_ns else 0.0,
            "users": runner.user_count if runner else 0,
            "sent": sent,
            "delivered": received,
            "lost": lost,
        }

    def write_progress_forever(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        target = self.run_dir / "progress.json"
        while not self._written:
            gevent.sleep(PROGRESS_INTERVAL_S)
            staging = target.with_suffix(".tmp")
            staging.write_text(json.dumps(self.progress()))
            staging.replace(target)


class WorkerState:
    def __init__(self, environment: Any, context: ProcessContext) -> None:
        self.environment = environment
        self.context = context

    def ship_forever(self) -> None:
        while True:
            gevent.sleep(SHIP_INTERVAL_S)
            self.ship(final=False)

    def ship(self, final: bool) -> None:
        recorder = self.context.recorder
        while True:
            batch = recorder.take_batch(final=final)
            self.environment.runner.send_message(RECORDS, batch)
            if not batch["has_more"]:
                return

    def on_flush(self, environment: Any, msg: Any, **_: Any) -> None:
        self.ship(final=True)
        environment.runner.send_message(FLUSHED, {"process": self.context.process})

    def on_control(self, environment: Any, msg: Any, **_: Any) -> None:
        self.context.sending = bool(msg.data.get("sending", True))

    def on_ping(self, environment: Any, msg: Any, **_: Any) -> None:
        environment.runner.send_message(
            PONG,
            {"process": self.context.process, "t0": msg.data["t0"], "worker_ns": time.time_ns()},
        )


def install_hooks() -> None:
    """Register fanbench's Locust event handlers (called from the locustfile)."""

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
            context = ProcessContext(runner.worker_index, scenario, Recorder(runner.worker_index))
            process_context.install(context)
            worker = WorkerState(environment, context)
            runner.register_message(FLUSH, worker.on_flush, concurrent=True)
            runner.register_message(CONTROL, worker.on_control)
            runner.register_message(PING, worker.on_ping)
            gevent.spawn(worker.ship_forever)
            gevent.spawn(health.sample_forever, context)
            return
        local = None
        if isinstance(runner, LocalRunner):
            local = ProcessContext(0, scenario, Recorder(0))
            process_context.install(local)
            gevent.spawn(health.sample_forever, local)
        master = MasterState(environment, scenario, local)
        if isinstance(runner, MasterRunner):
            runner.register_message(RECORDS, master.on_records)
            runner.register_message(FLUSHED, master.on_flushed)
            runner.register_message(PONG, master.on_pong)

        @events.test_start.add_listener
        def _started(environment: Any, **_: Any) -> None:
            if master.started_ns:
                return
            master.started_ns = time.time_ns()
            if isinstance(environment.runner, MasterRunner):
                gevent.spawn(master.measure_clocks)
            else:
                gevent.spawn(master.absorb_local_forever)
            gevent.spawn(master.write_progress_forever)

        @events.test_stopping.add_listener
        def _stopping(environment: Any, **_: Any) -> None:
            master.finish()
