"""A slow fan-out is late, not lost (issue 11, item 1).

One real swarm on a stage that cannot keep up: one Lambda execution environment
for every function and 400 ms on every @connections post, so sendmessage
invocations queue and finish seconds after the last send, far past the 1 s
drain window. The receivers keep listening until the fan-outs go quiet: every
expected delivery arrives, the ones after the drain window count as late, and
nothing counts as lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.reliability.support import SwarmResult, run_swarm

pytestmark = pytest.mark.timeout(600)

DRAIN_S = 1.0
SLOW_FANOUT = (
    "--users", "6", "--spawn-rate", "10", "--duration", "6", "--send-interval", "1",
    "--warmup", "1", "--drain", str(DRAIN_S), "--settle", "1", "--no-report", "--quiet",
    "--concurrency", "1", "--post-latency-ms", "400",
)  # fmt: skip


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> SwarmResult:
    root: Path = tmp_path_factory.mktemp("slow-fanout")
    return run_swarm("slow-fanout", root / "run", SLOW_FANOUT).check()


def test_fanouts_finishing_after_the_drain_window_are_late_not_lost(slow: SwarmResult) -> None:
    counts = slow.counts
    print(slow.figures(), "late", counts.late)
    assert counts.expected > 0
    assert counts.lost == 0, slow.figures()
    assert counts.delivered == counts.expected
    assert counts.late > 0, "the stage was meant to finish fan-outs after the drain window"
    times = slow.run.meta["times"]
    after_drain = slow.run.deliveries["received_ns"] > times["drain_deadline_ns"]
    assert counts.late == int(np.sum(after_drain))


def test_the_wait_ended_because_receipts_stopped_not_at_its_limit(slow: SwarmResult) -> None:
    drain = slow.run.meta["drain"]
    assert drain["settled"], drain
    times = slow.run.meta["times"]
    last_receipt = int(slow.run.deliveries["received_ns"].max())
    # The collection outlasted the last receipt by the quiet window, and the limit
    # (integration timeout plus function timeouts) was never reached.
    assert times["end_ns"] - last_receipt >= drain["quiet_s"] * 1e9 * 0.9
    assert (last_receipt - times["stop_sending_ns"]) / 1e9 < drain["limit_s"]
    assert f"late {slow.counts.late} (after the drain window)" in slow.stdout


def test_the_summary_says_the_stage_limited_the_run(slow: SwarmResult) -> None:
    """Issue 11, item 2: the stage queues, and the summary names it. (On a shared 2-core
    machine the generator may lag too, which the verdict then reports as both sides.)"""
    assessed = slow.summary.saturation
    assert f"{slow.counts.late:,} receipts after the drain window" in assessed.system
    if assessed.generator:
        assert assessed.limited_by == "both"
        assert "saturation: both sides limited the run (system under test: " in slow.stdout
    else:
        assert assessed.limited_by == "system under test"
        assert "saturation: the system under test limited the run" in slow.stdout
