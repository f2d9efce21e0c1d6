"""Connections the server closes leave their audience at the close (issue 11, item 4).

One real swarm on a stage whose maximum connection duration is 5 s (AWS: two
hours), so the stage closes every connection with 1001 at least twice during a
14 s run; users start one a second, so some are closed while others send. A
closed client's membership ends at the close (later messages do not expect it),
the close counts as *dropped*, and the user rejoins under a new client id.

The settle window is 2.5 s: a message still being fanned out when the stage
closes a recipient is genuinely not delivered there, and on a loaded 2-core
machine a fan-out can take a second or two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fanbench_common.rundir import STILL_CONNECTED
from tests.reliability.support import SwarmResult, run_swarm

pytestmark = pytest.mark.timeout(600)

USERS = 6
MAX_CONNECTION_S = 5.0
CLOSING_SWARM = (
    "--users", str(USERS), "--spawn-rate", "1", "--duration", "14", "--send-interval", "0.5",
    "--warmup", "1", "--drain", "1", "--settle", "2.5", "--no-report", "--quiet",
    "--max-connection", str(MAX_CONNECTION_S),
)  # fmt: skip


@pytest.fixture(scope="module")
def closing(tmp_path_factory: pytest.TempPathFactory) -> SwarmResult:
    root: Path = tmp_path_factory.mktemp("server-closes")
    return run_swarm("server-closes", root / "run", CLOSING_SWARM).check()


def test_server_closes_are_dropped_connections_not_lost_messages(closing: SwarmResult) -> None:
    counts = closing.counts
    print(closing.figures(), "dropped", counts.dropped)
    run = closing.run
    dropped = run.errors["kind"] == "dropped"
    assert counts.dropped == int(np.sum(dropped)) >= USERS
    assert all("1001" in detail for detail in run.errors["detail"][dropped])
    assert counts.expected > 0
    # Memberships end at the close (next test), so nothing counts as lost.
    assert counts.lost == 0, closing.figures()
    assert f"dropped by the server {counts.dropped}," in closing.stdout


def test_a_dropped_clients_membership_ends_at_the_close_and_it_rejoins(
    closing: SwarmResult,
) -> None:
    run = closing.run
    dropped = run.errors["kind"] == "dropped"
    closed_at = dict(
        zip(run.errors["client"][dropped].tolist(), run.errors["t_ns"][dropped].tolist(),
            strict=True)
    )  # fmt: skip
    row_of = {int(c): i for i, c in enumerate(run.membership["client"])}
    for client, t_ns in closed_at.items():
        assert run.membership["disconnected_ns"][row_of[client]] == t_ns
    # A drop while sending is followed by a new connection under a new id (one send
    # interval later at most); the drain does not reconnect.
    rejoin_by = run.meta["times"]["stop_sending_ns"] - 1_000_000_000
    while_sending = sum(1 for t_ns in closed_at.values() if t_ns < rejoin_by)
    assert while_sending >= USERS
    assert len(run.membership["client"]) >= USERS + while_sending
    assert len(set(run.membership["client"].tolist())) == len(run.membership["client"])
    open_at_end = run.membership["disconnected_ns"] == STILL_CONNECTED
    assert not set(run.membership["client"][open_at_end].tolist()) & set(closed_at)
