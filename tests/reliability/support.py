"""Helpers for the reliability suite: real swarms, WebSocket clients, the stage's counters.

A *swarm* is a real ``fanbench run`` subprocess: the local stage (gateway, Lambda
workers, DynamoDB emulator), a Locust swarm of WebSocket clients, a run
directory. The figures the tests assert on come from the suite's own loss
accounting (``reports.analysis.analyze``) over that directory.

Every wait is bounded in time and every loop in count; every address is 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
from websockets.sync.client import ClientConnection

from fanbench_common.loss import LossAccount, ledger
from fanbench_common.rundir import Run, read_run
from fanbench_common.scenario import load_scenario
from loadtest import envelope
from loadtest.process_context import CLIENTS_PER_PROCESS
from reports.analysis import analyze, measured_window_start
from reports.stats import median_standard_error
from reports.summary import Summary
from tests import ws
from tests.repo import REPO_ROOT as PROJECT_ROOT

if TYPE_CHECKING:
    pass

SECRET_TOKEN = "fbtok-" + secrets.token_hex(16)
"""The ``$connect`` token of the security run: random per session, so a hit is never luck."""

SEND = "SendMessageFunction"
DEFAULT_HINT = ws.DEFAULT_HINT
INTERNAL_SERVER_ERROR = "Internal server error"
SWARM_TIMEOUT_S = 240.0

# The WebSocket clients' one home is tests/ws.py; the names this module always had:
RECV_TIMEOUT_S = ws.RECV_TIMEOUT_S
clients = ws.clients
open_ws = ws.open_ws
recv_text = ws.recv_text
recv_until = ws.recv_until
wait_for = ws.wait_for

# The fault swarms are the shipped scenario files (short: 10 users, ~10 s of sending).
RUN_QUIETLY = ("--no-report", "--quiet")
TRANSIENT = load_scenario("faults-transient")
INJECTED_POST_FAULT_SHARE = (
    TRANSIENT.faults["post_failure_rate"] + TRANSIENT.faults["throttle_rate"]
)

SWARMS: dict[str, tuple[str, ...]] = {
    "optimized-post-faults": ("--scenario", "faults-transient", *RUN_QUIETLY),
    "baseline-post-faults": (
        "--scenario", "faults-transient", "--variant", "baseline", *RUN_QUIETLY,
    ),
    "baseline-post-faults-no-sdk-retries": (
        "--scenario", "faults-transient", "--variant", "baseline",
        "--lambda-env", "AWS_MAX_ATTEMPTS=1", *RUN_QUIETLY,
    ),
    "lambda-errors": ("--scenario", "faults-lambda-errors", *RUN_QUIETLY),
    "optimized-timeout": (
        "--scenario", "faults-lambda-timeout", "--variant", "optimized", *RUN_QUIETLY,
    ),
    "sequential-timeout": (
        "--scenario", "faults-lambda-timeout", "--variant", "sequential", *RUN_QUIETLY,
    ),
    "token": (
        "--users", "3", "--spawn-rate", "10", "--duration", "4", "--send-interval", "0.5",
        "--warmup", "1", "--drain", "1", "--settle", "0.5", "--quiet",
        "--token", SECRET_TOKEN,
    ),
}  # fmt: skip
"""Every swarm the suite runs, by name. Tests ask for them with ``@pytest.mark.swarms``."""


def fanbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "fanbench", *args]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


# -- swarms -------------------------------------------------------------------------


@dataclass
class SwarmResult:
    name: str
    run_dir: Path
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    descendant_cmdlines: list[list[str]] = field(default_factory=list)
    """Command lines of every process the run started (stage, Lambda workers, Locust, ...)."""

    def check(self) -> SwarmResult:
        assert self.returncode == 0, (
            f"fanbench run {self.name} exited {self.returncode}\n"
            f"{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        )
        return self

    @cached_property
    def run(self) -> Run:
        return read_run(self.check().run_dir)

    @cached_property
    def summary(self) -> Summary:
        return analyze(self.run)

    @property
    def counts(self) -> LossAccount:
        return self.summary.counts

    @property
    def stage_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.run.meta["stage"]["stats"]
        return stats

    def gateway(self, name: str) -> int:
        return int(self.stage_stats["gateway"].get(name, 0))

    def lambda_stat(self, name: str, function: str) -> int:
        return int(self.stage_stats["lambda"][name].get(function, 0))

    def figures(self) -> str:
        """One line for the test log: what this run measured."""
        c = self.counts
        low, high = self.summary.rates.loss.ci95
        return (
            f"{self.name}: {c.messages} messages, {c.delivered}/{c.expected} delivered,"
            f" lost {c.lost} ({100 * c.loss_rate:.2f} %, 95 % CI {100 * low:.2f}"
            f"-{100 * high:.2f} %), error frames {c.error_frames}"
        )


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def stop_process_tree(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGINT the run's group (the stage stops cleanly), then SIGKILL whatever is left."""
    if process.poll() is None:
        remembered = _descendants(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
        for child in [*remembered, *_descendants(process.pid)]:
            with contextlib.suppress(psutil.Error):
                child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_swarm(run_dir: Path, args: Sequence[str]) -> subprocess.Popen[bytes]:
    """``fanbench run --run-dir run_dir ARGS`` in its own process group; output to files."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    stdout = (run_dir.parent / f"{run_dir.name}.stdout").open("wb")
    stderr = (run_dir.parent / f"{run_dir.name}.stderr").open("wb")
    with stdout, stderr:
        return subprocess.Popen(
            fanbench("run", "--run-dir", str(run_dir), *args),
            cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            env=subprocess_env(), start_new_session=True,
        )  # fmt: skip


def finish_swarm(
    name: str,
    process: subprocess.Popen[bytes],
    run_dir: Path,
    started: float,
    timeout_s: float = SWARM_TIMEOUT_S,
) -> SwarmResult:
    """Wait for a started swarm (sampling its processes' command lines); stop it at timeout."""
    cmdlines: dict[int, list[str]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while process.poll() is None and time.monotonic() < deadline:
            for child in _descendants(process.pid):
                with contextlib.suppress(psutil.Error):
                    cmdlines.setdefault(child.pid, child.cmdline())
            time.sleep(0.25)
    finally:
        stop_process_tree(process)
    out = run_dir.parent / f"{run_dir.name}.stdout"
    err = run_dir.parent / f"{run_dir.name}.stderr"
    return SwarmResult(
        name=name,
        run_dir=run_dir,
        returncode=process.returncode,
        stdout=out.read_text(errors="replace"),
        stderr=err.read_text(errors="replace"),
        wall_s=time.monotonic() - started,
        descendant_cmdlines=list(cmdlines.values()),
    )


def run_swarm(name: str, run_dir: Path, args: Sequence[str]) -> SwarmResult:
    started = time.monotonic()
    return finish_swarm(name, start_swarm(run_dir, args), run_dir, started)


# -- error frames against the messages that lost recipients ------------------------------


@dataclass(frozen=True)
class SenderAccount:
    """One swarm user's messages by fate, and the error frames it received."""

    error_frames: int = 0
    whole: int = 0
    """Messages that reached every expected recipient (at least one was expected)."""
    partial: int = 0
    """Messages that reached some expected recipients, not all."""
    none: int = 0
    """Messages that reached no expected recipient (at least one was expected)."""
    audienceless: int = 0
    """Messages nobody was expected to receive (sent before anyone else had joined)."""

    @property
    def lossy(self) -> int:
        return self.partial + self.none


def sender_accounts(run: Run) -> dict[int, SenderAccount]:
    """Per sending user: its messages' fates (from the loss accounting's own ledger) and its
    error frames. Counting per sender needs no guess about which frame answers which message."""
    facts = ledger(
        run.sends, run.deliveries, run.membership, int(float(run.scenario["settle_s"]) * 1e9)
    )
    expected, delivered = facts.expected_per_message, facts.delivered_per_message
    frames = run.errors["client"][run.errors["kind"] == "error_frame"]
    accounts: dict[int, SenderAccount] = {}
    for client in {int(c) for c in run.sends["client"]} | {int(c) for c in frames}:
        mine = run.sends["client"] == client
        e, d = expected[mine], delivered[mine]
        accounts[client] = SenderAccount(
            error_frames=int(np.sum(frames == client)),
            whole=int(np.sum((e > 0) & (d == e))),
            partial=int(np.sum((d > 0) & (d < e))),
            none=int(np.sum((e > 0) & (d == 0))),
            audienceless=int(np.sum(e == 0)),
        )
    return accounts


def lost_in(run: Run, fate: str) -> int:
    """Deliveries lost by messages of one fate: ``"partial"`` or ``"none"``."""
    facts = ledger(
        run.sends, run.deliveries, run.membership, int(float(run.scenario["settle_s"]) * 1e9)
    )
    expected, delivered = facts.expected_per_message, facts.delivered_per_message
    chosen = (delivered > 0) & (delivered < expected) if fate == "partial" else (delivered == 0)
    return int(np.sum((expected - delivered)[chosen]))


# -- WebSocket clients and the stage's view ---------------------------------------------


def is_envelope(frame: str) -> bool:
    """A swarm user's chat message (its broadcast reaches every connection)."""
    return envelope.decode(frame) is not None


def own_id(client: ClientConnection) -> str:
    """The client's connection id; only swarm messages may arrive before the reply."""
    return ws.own_id(client, skip=is_envelope)


def chat(message: str) -> str:
    return json.dumps({"action": "sendmessage", "message": message})


# -- clocks across processes -----------------------------------------------------------


RECEIVER_FLOOR_MS = 8.0
"""Below this, two workers' medians are taken to agree whatever the noise says (scheduling of
two processes on one host)."""
NOISE_SIGMAS = 4.0


@dataclass(frozen=True)
class AcrossWithin:
    """Worker ``source``'s fan-out latencies (ms) to its own clients and to the others'."""

    within: np.ndarray[Any, Any]
    across: np.ndarray[Any, Any]

    @property
    def difference_ms(self) -> float:
        return float(np.median(self.across) - np.median(self.within))

    def noise_ms(self) -> float:
        """``NOISE_SIGMAS`` standard errors of the difference of the two medians: on a busy
        host latencies, and their spread, grow."""
        errors = median_standard_error(self.within), median_standard_error(self.across)
        return NOISE_SIGMAS * math.hypot(*errors)


def latencies_within_and_across(run: Run, source: int) -> AcrossWithin:
    """A skewed clock would pull the two apart by its skew."""
    facts = ledger(run.sends, run.deliveries, run.membership, int(run.scenario["settle_s"] * 1e9))
    keep = facts.receipt_expected & facts.receipt_first
    message = facts.receipt_message[keep]
    measured = run.sends["sent_ns"][message] >= measured_window_start(run)
    message = message[measured]
    latency_ms = (
        run.deliveries["received_ns"][keep][measured] - run.sends["sent_ns"][message]
    ) / 1e6
    sender = run.sends["client"][message] // CLIENTS_PER_PROCESS
    receiver = run.deliveries["client"][keep][measured] // CLIENTS_PER_PROCESS
    return AcrossWithin(
        within=latency_ms[(sender == source) & (receiver == source)],
        across=latency_ms[(sender == source) & (receiver != source)],
    )


def assert_clocks_agree_across_workers(run: Run, skew_ms: float) -> None:
    """Each worker's latencies to the other worker's clients agree with those to its own within
    the stated clock uncertainty plus the measured noise, which stays well under the skew a
    wrong correction would leave (so a failure to correct is still caught on a busy host)."""
    stated_ms = sum(c["uncertainty_ns"] for c in run.meta["clock_offsets"].values()) / 1e6
    for source in (0, 1):
        pair = latencies_within_and_across(run, source)
        allowed_ms = stated_ms + max(RECEIVER_FLOOR_MS, pair.noise_ms())
        print(f"from worker {source}: across - within {pair.difference_ms:.1f} ms, allowed "
              f"{allowed_ms:.1f} ms (stated {stated_ms:.2f} ms)")  # fmt: skip
        assert allowed_ms < skew_ms / 2, (source, allowed_ms)
        assert abs(pair.difference_ms) <= allowed_ms, (source, pair.difference_ms, allowed_ms)
