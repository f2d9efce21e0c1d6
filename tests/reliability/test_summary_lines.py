"""``fanbench run``'s summary names refused connects (issue 11, item 3).

Reads the suite's ``lambda-errors`` swarm, where the stage's first ``$connect`` fails
(502) for certain: the terminal summary must say so, not leave it to run.json.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.reliability.conftest import SwarmQueue

pytestmark = [pytest.mark.swarms("lambda-errors"), pytest.mark.timeout(600)]


def test_connect_failures_appear_in_the_summary_lines(swarms: SwarmQueue) -> None:
    result = swarms.result("lambda-errors").check()
    run = result.run
    failed = run.errors["kind"] == "connect_failed"
    refused = int(np.sum(failed))
    assert refused >= 1
    line = next(line for line in result.stdout.splitlines() if "connect failures" in line)
    assert f"connect failures {refused} (first: " in line
    assert "HTTP 502" in line
    assert f"connections {len(run.membership['client'])}," in line
    assert f"unexpected receipts {result.counts.unexpected}" in line
