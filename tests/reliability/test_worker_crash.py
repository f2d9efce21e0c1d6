"""A crashed worker is named, with what it took, and the run fails (issue 11, item 3).

One real swarm with two Locust workers; once records flow, one worker is killed
(SIGKILL: no goodbye, no final flush). Its clients' memberships were shipped as
they connected, so the surviving worker's messages still have them as expected
recipients until the worker was last heard; the summary names the missing
worker and what it took, shows unexpected receipts, and ``fanbench run`` exits
non-zero without flooding the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from fanbench_common.loss import ledger
from fanbench_common.rundir import STILL_CONNECTED, read_run
from loadtest.process_context import CLIENTS_PER_PROCESS
from tests.reliability.support import SwarmResult, finish_swarm, start_swarm

pytestmark = pytest.mark.timeout(600)

CRASH_SWARM = (
    "--users", "10", "--spawn-rate", "10", "--duration", "10", "--send-interval", "0.5",
    "--warmup", "1", "--drain", "1", "--settle", "1", "--no-report", "--quiet",
    "--workers", "2",
)  # fmt: skip
SENT_BEFORE_KILL = 40
TERMINAL_LIMIT_BYTES = 20_000


def _locust_workers(root: int) -> list[psutil.Process]:
    """The Locust processes whose parent is the Locust master (``--processes`` forks them)."""
    tree = psutil.Process(root).children(recursive=True)
    locust = [p for p in tree if "locust" in " ".join(p.cmdline())]
    pids = {p.pid for p in locust}
    return [p for p in locust if p.ppid() in pids]


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[SwarmResult, int]:
    run_dir: Path = tmp_path_factory.mktemp("worker-crash") / "run"
    started = time.monotonic()
    process = start_swarm(run_dir, CRASH_SWARM)
    progress = run_dir / "progress.json"
    killed = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.25)
        try:
            sent = json.loads(progress.read_text())["sent"]
        except (OSError, ValueError, KeyError):
            continue
        workers = _locust_workers(process.pid)
        if sent >= SENT_BEFORE_KILL and len(workers) == 2:
            victim = workers[0]
            killed = victim.pid
            os.kill(victim.pid, signal.SIGKILL)
            break
    assert killed, "the swarm never reached the point where a worker is killed"
    return finish_swarm("worker-crash", process, run_dir, started), killed


def test_a_killed_worker_fails_the_run_and_is_named_with_what_it_took(
    crashed: tuple[SwarmResult, int],
) -> None:
    result, _ = crashed
    print(result.stdout)
    assert result.returncode != 0, "records are missing: the run must not pass"
    run = read_run(result.run_dir)
    missing = run.meta["collection"]["missing_processes"]
    assert len(missing) == 1, missing
    ((process, took),) = missing.items()
    mine = run.sends["client"] // CLIENTS_PER_PROCESS == int(process)
    assert took["sends"] == int(np.sum(mine)) > 0
    assert took["receipts"] == int(
        np.sum(run.deliveries["client"] // CLIENTS_PER_PROCESS == int(process))
    )
    assert took["clients"] == 5
    line = (
        f"worker {process} went missing: its {took['sends']} sends, {took['receipts']} receipts"
        f" and {took['clients']} clients"
    )
    assert line in result.stdout
    assert "unexpected receipts" in result.stdout
    assert "incomplete" in result.stderr


def test_its_clients_stayed_members_until_it_was_last_heard(
    crashed: tuple[SwarmResult, int],
) -> None:
    result, _ = crashed
    run = read_run(result.run_dir)
    (process, took), *_ = run.meta["collection"]["missing_processes"].items()
    theirs = run.membership["client"] // CLIENTS_PER_PROCESS == int(process)
    # Shipped at connect, so present although the worker never flushed; ended, not open.
    assert int(np.sum(theirs)) == took["clients"]
    ends = run.membership["disconnected_ns"][theirs]
    assert STILL_CONNECTED not in ends.tolist()
    assert (ends == took["last_heard_ns"]).all()
    # While everyone was connected and the dead worker still heard from, every message of
    # the survivor expected all nine others, its own worker's clients and the dead one's.
    settle_ns = int(float(run.scenario["settle_s"]) * 1e9)
    expected = ledger(run.sends, run.deliveries, run.membership, settle_ns).expected_per_message
    sent = run.sends["sent_ns"]
    survivor = run.sends["client"] // CLIENTS_PER_PROCESS != int(process)
    window = (sent >= run.membership["connected_ns"].max()) & (
        sent + settle_ns <= took["last_heard_ns"]
    )
    assert int(np.sum(survivor & window)) > 0
    assert set(expected[survivor & window].tolist()) == {9}


def test_the_terminal_stays_readable(crashed: tuple[SwarmResult, int]) -> None:
    result, _ = crashed
    terminal = result.stdout + result.stderr
    assert len(terminal.encode()) < TERMINAL_LIMIT_BYTES, terminal[-3000:]
    assert "Traceback" not in terminal
    assert (result.run_dir / "locust" / "output.log").is_file()
