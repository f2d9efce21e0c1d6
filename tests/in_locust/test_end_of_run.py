"""The end of a run: the quiet window after the drain runs from the last receipt seen."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fanbench_common.scenario import Scenario
from loadtest import coordination
from loadtest.coordination import MasterState


@pytest.fixture
def master(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MasterState:
    # Distributed (no local process): quiet is QUIET_S plus one shipping interval, 0.3 s here.
    monkeypatch.setattr(coordination, "QUIET_S", 0.2)
    monkeypatch.setattr(coordination, "SHIP_INTERVAL_S", 0.1)
    state = MasterState(
        SimpleNamespace(runner=None, host=""), Scenario(run_dir=str(tmp_path)), local=None
    )
    state.stop_sending_ns = time.time_ns()
    return state


def test_a_drain_that_was_already_quiet_counts_towards_the_quiet_window(
    master: MasterState,
) -> None:
    began = time.monotonic()
    drain = master.wait_for_quiet((0, time.time_ns() - 1_000_000_000))
    assert time.monotonic() - began < 0.15
    assert drain["settled"]
    assert drain["quiet_s"] == pytest.approx(0.3)


def test_a_receipt_just_seen_restarts_the_quiet_window(master: MasterState) -> None:
    began = time.monotonic()
    drain = master.wait_for_quiet((0, time.time_ns()))
    assert 0.3 <= time.monotonic() - began < 1.0
    assert drain["settled"]
