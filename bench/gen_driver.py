"""One Locust process (gevent) receiving from ``bench.gen_server``: how many receipts/s it sustains.

``python -m bench.gen_driver --user fanbench|reference --port P [...]`` runs
Locust programmatically with U users of one kind, connected to the broadcast
server, then asks the server (over the parent's stdin pipe, relayed through
this process's control link) to pace R frames/s for a few seconds at each rung
of a ladder, and finally to burst. For each rung it reports frames sent,
receipts counted by the end of the rung and after a short drain, and the
receive-loop lag: how late a greenlet's ``gevent.sleep(0.01)`` wakes, sampled
all along (every receive greenlet waits on the same hub), net of the time the
kernel kept the process off the CPU (``LagProbe``); the raw p99 is kept too.

Users:

* ``fanbench``: ``loadtest.users.ChatUser`` unchanged (websockets sync client, a
  receive greenlet per user, ``recorder.delivery`` and a Locust request event
  per frame).
* ``reference``: written the way Locust's SocketIO user works — a
  ``websocket-client`` connection from ``websocket.create_connection`` with the
  options python-engineio passes (``enable_multithread=True``; UTF-8 validation
  left on) and one receive greenlet per user — doing fanbench-per-frame's work
  (decode, record, fire), so only the client library and its receive loop differ.
* ``reference-noutf8``: the same with ``skip_utf8_validation=True`` (without
  the optional ``wsaccel``, websocket-client validates UTF-8 in pure Python).

The process's resident memory is read before the users start and once all are
connected (``rss_*``): with ``--rates ''`` and a large ``--users`` the run measures
how many connections one process holds and the memory each costs, then bursts
``--burst`` frames to every one of them.

The result is one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import gevent
import locust  # first: importing Locust applies gevent's monkey patching
import numpy as np
import psutil
import websocket
from locust import User, constant, task
from locust.env import Environment
from websockets.sync.client import ClientConnection, connect

from bench.stagetools import raise_open_files
from fanbench_common.scenario import Scenario
from loadtest import envelope, process_context
from loadtest.process_context import ProcessContext
from loadtest.recorder import Recorder
from loadtest.users import FANOUT, REQUEST_TYPE, ChatUser

LAG_TICK_S = 0.01
MAX_FRAMES_PER_USER = 10**9
CONNECT_TIMEOUT_S = 60.0
SHIP_INTERVAL_S = 1.0
SPARE_FILES = 512
FILES_PER_CONNECTION = 3
"""A websockets sync client holds its socket and a socketpair that wakes its reader at close."""


class ServerLink:
    """The broadcast server's ``/control`` connection: one JSON reply per JSON command."""

    def __init__(self, port: int) -> None:
        self.connection: ClientConnection = connect(
            f"ws://127.0.0.1:{port}/control",
            open_timeout=10,
            ping_interval=None,
            proxy=None,
            legacy=True,
        )

    def call(self, request: dict[str, Any], timeout_s: float = 180.0) -> dict[str, Any]:
        self.connection.send(json.dumps(request))
        reply: dict[str, Any] = json.loads(self.connection.recv(timeout=timeout_s))
        return reply

    def close(self) -> None:
        self.connection.close()


def run_queue_wait_ns() -> int:
    """Time this thread spent runnable but not running (``/proc/self/schedstat``, Linux)."""
    try:
        with open("/proc/self/schedstat") as stats:
            return int(stats.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class LagProbe:
    """Oversleep of ``gevent.sleep(LAG_TICK_S)``, in ms, one sample per tick.

    ``samples`` is the raw oversleep. ``own`` subtracts the time the kernel kept
    this process waiting for a CPU during the sleep (run-queue wait): on a shared
    host other tenants' work is not the generator's lag, while a saturated hub
    (every greenlet busy on this process's CPU) still counts in full.
    """

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.own: list[float] = []

    def run(self, max_samples: int) -> None:
        for _ in range(max_samples):
            waited = run_queue_wait_ns()
            began = time.perf_counter()
            gevent.sleep(LAG_TICK_S)
            lag_ms = (time.perf_counter() - began - LAG_TICK_S) * 1000
            self.samples.append(lag_ms)
            self.own.append(max(0.0, lag_ms - (run_queue_wait_ns() - waited) / 1e6))


class FanbenchUser(ChatUser):
    abstract = True


class FanbenchPerFrameUser(ChatUser):
    """ChatUser as it was before batching: one Locust request event per receipt."""

    abstract = True

    def _receipt_sink(self) -> Callable[[int, float], None]:
        fire = self.environment.events.request.fire

        def fire_one(_received_ns: int, response_time_ms: float) -> None:
            fire(request_type=REQUEST_TYPE, name=FANOUT, response_time=response_time_ms,
                 response_length=0, exception=None, context={})  # fmt: skip

        return fire_one


class ReferenceUser(User):
    """The Locust SocketIO user's shape on websocket-client: connect, one receive greenlet."""

    abstract = True
    wait_time = constant(1)
    skip_utf8_validation = False

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.shared = process_context.current()
        self.client_id, _ = self.shared.next_user()
        self.ws: websocket.WebSocket | None = None
        self._receiver: gevent.Greenlet | None = None

    def on_start(self) -> None:
        self.ws = websocket.create_connection(
            self.host or "", timeout=10, enable_multithread=True,
            skip_utf8_validation=self.skip_utf8_validation,
        )  # fmt: skip
        self.ws.settimeout(None)
        self._receiver = gevent.spawn(self._receive, self.ws)

    def _receive(self, ws: websocket.WebSocket) -> None:
        recorder = self.shared.recorder
        fire = self.environment.events.request.fire
        me = self.client_id
        for _ in range(MAX_FRAMES_PER_USER):
            try:
                frame = ws.recv()
            except (websocket.WebSocketException, OSError):
                return
            now = time.time_ns()
            message = envelope.decode(frame) if isinstance(frame, str) else None
            if message is not None:
                recorder.delivery(me, message.client, message.seq, now)
                fire(request_type="WS", name="fanout", response_time=(now - message.sent_ns) / 1e6,
                     response_length=0, exception=None, context={})  # fmt: skip

    @task
    def idle(self) -> None:
        """Receivers only: the task does nothing."""

    def on_stop(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            ws.close()
        if self._receiver is not None:
            self._receiver.kill(block=False)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


USER_KINDS = ("fanbench", "fanbench-per-frame", "reference", "reference-noutf8")


def _user_class(kind: str, url: str) -> type[User]:
    bases: dict[str, type[User]] = {
        "fanbench": FanbenchUser,
        "fanbench-per-frame": FanbenchPerFrameUser,
    }
    base = bases.get(kind, ReferenceUser)
    attributes: dict[str, Any] = {"host": url, "abstract": False}
    if kind == "reference-noutf8":
        attributes["skip_utf8_validation"] = True
    return type(f"{kind.title().replace('-', '')}BenchUser", (base,), attributes)


def _drain(recorder: Recorder, target: int, timeout_s: float) -> float:
    began = time.perf_counter()
    for _ in range(int(timeout_s / 0.005) + 2):
        if recorder.received >= target or time.perf_counter() - began >= timeout_s:
            break
        gevent.sleep(0.005)
    return time.perf_counter() - began


def _step(
    link: ServerLink, recorder: Recorder, probe: LagProbe, rate: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One rung: the server paces ``rate`` frames/s for ``args.step_s``; what arrived, how late."""
    before, first_lag = recorder.received, len(probe.samples)
    reply = link.call({"cmd": "pace", "rate": rate, "seconds": args.step_s})
    by_end = recorder.received - before
    lags, own = probe.samples[first_lag:], probe.own[first_lag:]
    drain_s = _drain(recorder, before + reply["sent"], args.drain_s)
    step = {
        "rate": rate, "sent": reply["sent"], "behind": reply["behind"],
        "seconds": reply["seconds"], "received_by_end": by_end,
        "received": recorder.received - before, "drain_s": drain_s,
        "lag_p50_ms": _percentile(own, 50), "lag_p99_ms": _percentile(own, 99),
        "lag_max_ms": max(own, default=float("nan")),
        "raw_lag_p99_ms": _percentile(lags, 99), "load_average": os.getloadavg()[0],
    }  # fmt: skip
    step["sustained"] = sustained(step, args.lag_limit_ms)
    gevent.sleep(0.3)
    return step


def measure(args: argparse.Namespace) -> dict[str, Any]:
    open_files = raise_open_files(FILES_PER_CONNECTION * args.users + SPARE_FILES)
    context = ProcessContext(0, Scenario(send_interval_s=1.0, message_bytes=64), Recorder(0))
    context.sending = False
    process_context.install(context)
    recorder = context.recorder
    probe = LagProbe()
    gevent.spawn(probe.run, int(args.max_seconds / LAG_TICK_S))

    def ship() -> None:  # as the coordination hooks do: batches leave every second
        for _ in range(int(args.max_seconds / SHIP_INTERVAL_S)):
            gevent.sleep(SHIP_INTERVAL_S)
            recorder.take_batch()

    gevent.spawn(ship)
    url = f"ws://127.0.0.1:{args.port}/data"
    environment = Environment(user_classes=[_user_class(args.user, url)], events=locust.events)
    runner = environment.create_local_runner()
    link = ServerLink(args.port)
    process = psutil.Process()
    rss_before = process.memory_info().rss
    began = time.perf_counter()
    runner.start(args.users, spawn_rate=args.spawn_rate or args.users * 2)
    connected = 0
    connect_timeout_s = CONNECT_TIMEOUT_S + args.users / max(args.spawn_rate, 1.0)
    for _ in range(int(connect_timeout_s / 0.1)):
        connected = int(link.call({"cmd": "count"})["connections"])
        if connected >= args.users or time.perf_counter() - began > connect_timeout_s:
            break
        gevent.sleep(0.1)
    connect_s = time.perf_counter() - began
    gevent.sleep(0.5)
    rss_connected = process.memory_info().rss
    memory = {
        "open_files_limit": open_files, "rss_before": rss_before, "rss_connected": rss_connected,
        "rss_per_connection": (rss_connected - rss_before) / connected if connected else 0.0,
        "connect_failures": environment.stats.total.num_failures,
    }  # fmt: skip
    steps: list[dict[str, Any]] = []

    def rung(rate: int) -> bool:
        """A rung passes if either of two attempts sustains it (one hiccup of a shared host
        does not fail it; a saturated receive loop fails both)."""
        for attempt in (1, 2):
            steps.append({**_step(link, recorder, probe, rate, args), "attempt": attempt})
            if steps[-1]["sustained"]:
                return True
        return False

    failed_in_a_row = 0
    for rate in args.rates:
        passed = rung(rate)
        failed_in_a_row = 0 if passed else failed_in_a_row + 1
        if failed_in_a_row >= 2 or (not passed and saturated(steps[-1], args.lag_limit_ms)):
            break
    low = max((s["rate"] for s in steps if s["sustained"]), default=0)
    high = min((s["rate"] for s in steps if not s["sustained"] and s["rate"] > low), default=0)
    # Bisect between the highest sustained rung and the lowest failed one above it.
    for _ in range(args.refine if low and high else 0):
        middle = (low + high) // 2
        low, high = (middle, high) if rung(middle) else (low, middle)
    before, first_lag = recorder.received, len(probe.samples)
    cpu_before = process.cpu_times()
    started = time.perf_counter()
    reply = link.call({"cmd": "burst", "frames": args.burst})
    _drain(recorder, before + reply["sent"], 30.0)
    burst_s = time.perf_counter() - started
    cpu_after = process.cpu_times()
    cpu_s = cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
    lags = probe.own[first_lag:]
    burst = {
        "sent": reply["sent"], "received": recorder.received - before, "seconds": burst_s,
        "receipts_per_s": (recorder.received - before) / burst_s if burst_s > 0 else 0.0,
        "cpu_s": cpu_s,
        # CPU times tick every 10 ms: a burst too small to register one is unmeasured, not free.
        "receipts_per_cpu_s": (recorder.received - before) / cpu_s if cpu_s > 0 else float("nan"),
        "lag_p99_ms": _percentile(lags, 99), "lag_max_ms": max(lags, default=float("nan")),
    }  # fmt: skip
    runner.quit()
    link.close()
    fanout = environment.stats.entries.get((FANOUT, REQUEST_TYPE))
    return {"user": args.user, "users": args.users, "connected": connected,
            "connect_s": connect_s, "steps": steps, "burst": burst, **memory,
            "locust_fanout_requests": fanout.num_requests if fanout else 0,
            "recorded": recorder.received}  # fmt: skip


def sustained(step: dict[str, Any], lag_limit_ms: float) -> bool:
    """Kept up: nothing skipped, ≥ 95 % in time, every receipt recorded, lag p99 under the limit."""
    sent = int(step["sent"])
    return (
        sent > 0
        and int(step["behind"]) == 0
        and int(step["received_by_end"]) >= 0.95 * sent
        and int(step["received"]) == sent
        and float(step["lag_p99_ms"]) < lag_limit_ms
    )


def saturated(step: dict[str, Any], lag_limit_ms: float) -> bool:
    """Clearly past capacity (not a hiccup): far behind, or the loop lag ten times the limit."""
    return (
        int(step["received_by_end"]) < 0.9 * int(step["sent"])
        or float(step["lag_p50_ms"]) > lag_limit_ms
        or float(step["lag_p99_ms"]) > 10 * lag_limit_ms
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gen_driver")
    parser.add_argument("--user", choices=USER_KINDS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument(
        "--rates", type=lambda s: [int(x) for x in s.split(",") if x], required=True
    )
    parser.add_argument("--spawn-rate", type=float, default=0.0, help="0: twice --users")
    parser.add_argument("--step-s", type=float, default=2.0)
    parser.add_argument("--drain-s", type=float, default=1.0)
    parser.add_argument("--burst", type=int, default=200, help="frames per connection")
    parser.add_argument("--lag-limit-ms", type=float, default=5.0)
    parser.add_argument("--refine", type=int, default=2, help="bisection rungs after the ladder")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    result = measure(parser.parse_args())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
