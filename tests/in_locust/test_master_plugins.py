"""The load generator's plug for the application's running ledger (``running_ledger``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from fanbench_common.rundir import Run
from fanbench_common.scenario import Scenario
from loadtest.coordination import MasterState


def test_progress_counts_losses_only_through_a_plugged_in_ledger(tmp_path: Path) -> None:
    scenario = Scenario(drain_s=3.0, settle_s=1.0, run_dir=str(tmp_path))
    master = MasterState(SimpleNamespace(runner=None, host=""), scenario, local=None)
    master.started_ns = 1_000 * 1_000_000_000
    # The load generator alone counts no loss: the progress line shows none.
    assert master.progress()["lost"] is None

    handed: list[tuple[Run, int]] = []

    def ledger(run: Run, horizon_ns: int) -> int:
        handed.append((run, horizon_ns))
        return 7

    master.running_ledger = ledger
    progress = master.progress()
    assert progress["lost"] == 7
    [(run, horizon_ns)] = handed
    assert run.meta["times"]["start_ns"] == master.started_ns
    assert len(run.sends["sent_ns"]) == 0
    # Drain 3 s (longer than settle) plus two 1 s shipping intervals before now.
    assert run.meta["times"]["end_ns"] - horizon_ns == 5 * 1_000_000_000
