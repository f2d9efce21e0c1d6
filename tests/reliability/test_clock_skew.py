"""A worker whose clock is off still measures true latencies (issue 11, item 5).

One real swarm with two Locust workers, worker 1's recorder clock set 250 ms
ahead and drifting 10 ms per second (``FANBENCH_TEST_CLOCK_SKEW``, the test-only
hook in ``loadtest/clock.py``). Every client is in one audience, so each message
reaches receivers on both workers. Uncorrected, a message crossing from worker 0
to worker 1 would read 250 ms (and up to 150 ms of drift) slower than one
delivered within worker 0, and the reverse direction that much faster; corrected
at write with the start and stop measurements, each cross-worker latency agrees
with the same-worker latency of the same sender within the stated uncertainty
(plus a few ms: the two workers do not receive equally fast on a loaded machine).

Comparing within one run rather than against a second, unskewed run keeps the
stage's and machine's run-to-run variance (issue 11, item 7) out of the check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.clock import CLOCK_SKEW_ENV
from tests.reliability.support import SwarmResult, assert_clocks_agree_across_workers, run_swarm

pytestmark = pytest.mark.timeout(600)

SKEW_MS, DRIFT_PPM = 250.0, 10_000.0
# Users start two a second: eight simultaneous cold starts time out on a loaded 2-core machine.
SKEWED_SWARM = (
    "--users", "8", "--spawn-rate", "2", "--duration", "16", "--send-interval", "0.5",
    "--warmup", "4", "--drain", "1", "--settle", "1", "--no-report", "--quiet",
    "--workers", "2",
)  # fmt: skip


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> SwarmResult:
    root: Path = tmp_path_factory.mktemp("clock-skew")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CLOCK_SKEW_ENV, f"1:{SKEW_MS}:{DRIFT_PPM}")
        return run_swarm("clock-skew", root / "run", SKEWED_SWARM).check()


def test_the_skew_and_its_drift_are_measured(skewed: SwarmResult) -> None:
    clocks = skewed.run.meta["clock_offsets"]
    print(clocks)
    assert set(clocks) == {"0", "1"}
    assert all(clock["measured"] for clock in clocks.values())
    skewed_clock, plain = clocks["1"], clocks["0"]
    uncertainty_ms = skewed_clock["uncertainty_ns"] / 1e6
    # The skew is measured at the first ping, a few seconds after the worker started drifting.
    assert SKEW_MS <= skewed_clock["offset_ns"] / 1e6 <= SKEW_MS + 60 + uncertainty_ms
    assert abs(skewed_clock["drift_ppm"] - DRIFT_PPM) < 500
    assert abs(plain["offset_ns"]) / 1e6 <= 5 + plain["uncertainty_ns"] / 1e6


def test_latencies_across_workers_agree_with_latencies_within_one(skewed: SwarmResult) -> None:
    assert_clocks_agree_across_workers(skewed.run, SKEW_MS)
