"""``fanbench trials``: the interleaved schedule, its refusals, and a real two-trial session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fanbench.cli import main
from fanbench.trials import schedule, trial_dir
from fanbench_common.rundir import read_run
from loadtest.stage.config import StageConfig
from reports.compare import verdict_sentences
from tests.repo import REPO_ROOT as PROJECT_ROOT
from tests.stage.support import running_stage

TRIALS_TIMEOUT_S = 400
TINY_RUN = (
    "--users", "3", "--spawn-rate", "10", "--duration", "2", "--send-interval", "0.5",
    "--warmup", "0.5", "--drain", "1", "--settle", "0.5", "--no-report", "--quiet",
)  # fmt: skip


def test_variants_alternate_a_b_a_b() -> None:
    assert schedule(("baseline", "optimized"), 3) == [
        (1, 0, "baseline"), (1, 1, "optimized"),
        (2, 0, "baseline"), (2, 1, "optimized"),
        (3, 0, "baseline"), (3, 1, "optimized"),
    ]  # fmt: skip
    assert trial_dir(Path("r"), 2, 1, "optimized") == Path("r/trial2-B-optimized")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--trials", "0"], "--trials must be at least 1"),
        (["--target", "wss://example.invalid/prod"], "pass --targets A_URL B_URL"),
        (["--targets", "wss://one.invalid/prod", "wss://one.invalid/prod"], "one stage twice"),
        (["--targets", "https://a.invalid/prod", "wss://b.invalid/prod"], "ws:// or wss://"),
        (["--variant", "baseline"], "takes --variants A B, not --variant"),
    ],
)
def test_impossible_sessions_are_refused_in_one_line(
    args: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["trials", "--variants", "baseline", "optimized", "--run-dir", str(tmp_path / "t")]
    assert main([*argv, *args]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("fanbench: error: ")
    assert words in err
    assert not (tmp_path / "t").exists()


def test_two_interleaved_trials_write_four_runs_and_a_between_run_comparison(
    tmp_path: Path,
) -> None:
    root = tmp_path / "session"
    command = [
        sys.executable, "-m", "fanbench", "trials", "--variants", "baseline", "optimized",
        "--trials", "2", "--run-dir", str(root), *TINY_RUN,
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=TRIALS_TIMEOUT_S,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    order = [line for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert order == [
        "trial 1 of 2, A: baseline", "trial 1 of 2, B: optimized",
        "trial 2 of 2, A: baseline", "trial 2 of 2, B: optimized",
    ]  # fmt: skip
    for name in ("trial1-A-baseline", "trial1-B-optimized", "trial2-A-baseline",
                 "trial2-B-optimized"):  # fmt: skip
        meta = json.loads((root / name / "run.json").read_text())
        assert meta["variant"] == name.rsplit("-", 1)[1]
    document = json.loads((root / "comparison" / "comparison.json").read_text())
    assert [side["label"] for side in document["sides"]] == ["baseline", "optimized"]
    (delta,) = document["deltas"]
    assert (delta["runs"], delta["between_runs"]) == ([2, 2], True)
    assert f"comparison: {root / 'comparison' / 'index.html'}" in result.stdout
    # It prints the comparison's own verdicts. Their wording ("2 vs 2 runs, between-run", or
    # "too few measured deliveries" when a busy host lets a 2 s swarm send a handful) is the
    # verdict's, tested on fixed data in tests/reports/test_cli_reports.py.
    sentences = verdict_sentences(document)
    assert sentences
    assert all(sentence in result.stdout for sentence in sentences)


def test_trials_against_two_deployed_stages_run_each_side_on_its_own_stage(
    tmp_path: Path,
) -> None:
    """Two stages standing in for two stacks (README, "Two variants on AWS"): side A's runs
    reach only the baseline stage, side B's only the optimized one."""
    root = tmp_path / "session"
    with (
        running_stage(StageConfig(variant="baseline"), tmp_path / "stage-a") as stage_a,
        running_stage(StageConfig(variant="optimized"), tmp_path / "stage-b") as stage_b,
    ):
        command = [
            sys.executable, "-m", "fanbench", "trials", "--variants", "baseline",
            "optimized", "--targets", stage_a.ws_url, stage_b.ws_url, "--trials", "1",
            "--run-dir", str(root), *TINY_RUN,
        ]  # fmt: skip
        result = subprocess.run(
            command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=TRIALS_TIMEOUT_S,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )  # fmt: skip
        stats = {"A": stage_a.stats(), "B": stage_b.stats()}
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for side, name, stage in (("A", "trial1-A-baseline", stage_a),
                              ("B", "trial1-B-optimized", stage_b)):  # fmt: skip
        run = read_run(root / name)
        assert run.meta["target"] == stage.ws_url
        assert run.meta["variant"] == name.rsplit("-", 1)[1]
        assert run.meta["stage"]["kind"] == "remote"
        sends = len(run.sends["client"])
        invoked = _send_invocations(stats[side])
        print(side, name, sends, "sends,", invoked, "sendmessage invocations")
        assert sends > 0
        assert invoked == sends, stats[side]["lambda"]
    assert (
        stats["A"]["functions"]["SendMessageFunction"]["handler"]
        != (stats["B"]["functions"]["SendMessageFunction"]["handler"])
    )
    document = json.loads((root / "comparison" / "comparison.json").read_text())
    assert [side["label"] for side in document["sides"]] == ["baseline", "optimized"]


def _send_invocations(stats: dict[str, object]) -> int:
    counters = stats["lambda"]
    assert isinstance(counters, dict)
    invocations = counters["invocations"]
    assert isinstance(invocations, dict)
    return int(invocations.get("SendMessageFunction", 0))
