"""A run's variant label: what ``--variant`` says, or "unknown" against a ``--target``.

fanbench cannot see which handler a remote stage runs, so a ``--target`` run
without ``--variant`` must not claim to be "optimized" (the local stage's default)
in the banner, run.json or the report, where a comparison would read it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanbench.cli import build_parser
from fanbench.run import run_variant
from fanbench_common.scenario import UNKNOWN_VARIANT
from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from tests.repo import REPO_ROOT as PROJECT_ROOT
from tests.stage.support import stage_in

RUN_TIMEOUT_S = 180


@pytest.mark.parametrize(
    ("argv", "label"),
    [
        (["run"], "optimized"),
        (["run", "--variant", "baseline"], "baseline"),
        (["run", "--target", "wss://example.invalid/prod"], UNKNOWN_VARIANT),
        (["run", "--target", "wss://example.invalid/prod", "--variant", "baseline"], "baseline"),
    ],
)
def test_the_label_follows_the_flags(argv: list[str], label: str) -> None:
    args = build_parser().parse_args(argv)
    assert run_variant(args.target, args.variant) == label


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(StageConfig(), tmp_path_factory, "target-stage")


def test_a_target_run_without_variant_is_labelled_unknown_everywhere(
    stage: LocalStage, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "fanbench", "run", "--target", stage.ws_url,
        "--users", "3", "--spawn-rate", "10", "--duration", "3", "--send-interval", "1",
        "--warmup", "0.5", "--drain", "1", "--settle", "0.5", "--quiet", "--run-dir", str(run_dir),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"→ {stage.ws_url} ({UNKNOWN_VARIANT})" in result.stdout
    assert json.loads((run_dir / "run.json").read_text())["variant"] == UNKNOWN_VARIANT
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert summary["variant"] == UNKNOWN_VARIANT
    assert f"fanbench report — {UNKNOWN_VARIANT}" in (run_dir / "report" / "index.html").read_text()
    assert "optimized" not in (run_dir / "report" / "report.md").read_text().splitlines()[0]
