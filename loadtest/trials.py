"""``fanbench trials``: K interleaved runs of two local variants, then their comparison.

Runs alternate (A B A B ...) so that whatever drifts on the machine during the
session (other load, thermal state, caches) falls on both variants alike. Each
run is an ordinary run directory; the comparison uses the runs' spread, so its
verdict allows for run-to-run variation. The same variant twice (an A/A test)
shows how different two identical configurations look on this machine.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from fanbench_common.errors import RunDirError
from fanbench_common.rundir import read_run
from loadtest.run import RunError, execute, require_locust, summary_lines
from loadtest.stage.config import VARIANTS
from reports.analysis import analyze
from reports.compare import write_comparison

SIDES = "AB"
DEFAULT_TRIALS = 3


def schedule(variants: tuple[str, str], trials: int) -> list[tuple[int, int, str]]:
    """(trial, side, variant) in running order: A B, A B, ..."""
    return [(trial, side, variants[side]) for trial in range(1, trials + 1) for side in (0, 1)]


def trial_dir(root: Path, trial: int, side: int, variant: str) -> Path:
    return root / f"trial{trial}-{SIDES[side]}-{variant}"


def default_root() -> Path:
    return Path("runs") / f"trials-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def add_trials_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variants", nargs=2, required=True, metavar=("A", "B"), choices=VARIANTS,
        help="the two sendmessage handlers to alternate (the same one twice: an A/A test)",
    )  # fmt: skip
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                        help=f"runs of each variant (default: {DEFAULT_TRIALS})")  # fmt: skip


def validate_trials(args: argparse.Namespace) -> None:
    if args.trials < 1:
        raise ValueError("--trials must be at least 1")
    if args.target:
        raise ValueError(
            "fanbench trials switches the local stage's handler, which it cannot do on a "
            "--target: run each variant there with fanbench run, then fanbench compare ... --vs ..."
        )
    if args.variant is not None:
        raise ValueError("fanbench trials takes --variants A B, not --variant")


def trials_command(args: argparse.Namespace) -> int:
    """Run every trial, then write ROOT/comparison/; returns the exit status."""
    validate_trials(args)
    require_locust()
    root: Path = args.run_dir or default_root()
    if root.exists() and any(root.iterdir()):
        raise RunError(f"{root} is not empty; choose another --run-dir")
    sides: tuple[list[Path], list[Path]] = ([], [])
    for trial, side, variant in schedule(tuple(args.variants), args.trials):
        run_dir = trial_dir(root, trial, side, variant)
        print(f"trial {trial} of {args.trials}, {SIDES[side]}: {variant}", flush=True)
        execute(argparse.Namespace(**{**vars(args), "variant": variant, "run_dir": run_dir}))
        try:
            run = read_run(run_dir)
            summary = analyze(run)
        except RunDirError as error:
            raise RunError(str(error)) from None
        for line in summary_lines(summary, run):
            print(f"  {line}")
        if not args.no_report:
            from reports.prices import Prices
            from reports.render import write_report

            print(f"  report: {write_report(run_dir, Prices())}")
        sides[side].append(run_dir)
    index = write_comparison(sides[0], root / "comparison", force=False, versus=sides[1])
    document = json.loads((index.parent / "comparison.json").read_text())
    for delta in document["deltas"]:
        for sentence in delta["sentences"]:
            print(sentence)
    print(f"comparison: {index}")
    return 0
