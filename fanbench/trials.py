"""``fanbench trials``: K interleaved runs of two variants, then their comparison.

On the local stage the session switches the stage's handler between runs; with
``--targets A_URL B_URL`` side A runs against one deployed stage and side B
against another (two stacks, one per variant: README, "Two variants on AWS").

Runs alternate (A B A B ...) so that whatever drifts on the machine during the
session (other load, thermal state, caches) falls on both variants alike. Each
run is an ordinary run directory; the comparison uses the runs' spread, so its
verdict allows for run-to-run variation. The same variant twice (an A/A test)
shows how different two identical configurations look on this machine.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from fanbench.run import RunError, execute, require_locust, summarize_run
from fanbench_common.variants import VARIANT_NAMES
from reports.compare import compare_and_write, verdict_sentences

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
        "--variants", nargs=2, required=True, metavar=("A", "B"), choices=VARIANT_NAMES,
        help="the two sendmessage handlers to alternate (the same one twice: an A/A test)",
    )  # fmt: skip
    parser.add_argument(
        "--targets", nargs=2, metavar=("A_URL", "B_URL"),
        help="two deployed stages, one per variant: side A runs against the first, B the second",
    )  # fmt: skip
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                        help=f"runs of each variant (default: {DEFAULT_TRIALS})")  # fmt: skip


def validate_trials(args: argparse.Namespace) -> None:
    if args.trials < 1:
        raise ValueError("--trials must be at least 1")
    if args.target:
        raise ValueError(
            "fanbench trials switches the local stage's handler, which it cannot do on a "
            "--target: deploy each variant as its own stack and pass --targets A_URL B_URL"
        )
    if args.targets and args.targets[0] == args.targets[1]:
        raise ValueError(
            "--targets names one stage twice: its handler cannot switch between runs, so an "
            "A/A test on a deployed stage is --variants V V with two stacks of V"
        )
    for url in args.targets or ():
        if urlsplit(url).scheme not in ("ws", "wss"):
            raise ValueError(f"--targets must be ws:// or wss:// URLs, not {url!r}")
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
        target = args.targets[side] if args.targets else None
        print(f"trial {trial} of {args.trials}, {SIDES[side]}: {variant}", flush=True)
        execute(
            argparse.Namespace(
                **{**vars(args), "variant": variant, "run_dir": run_dir, "target": target}
            )
        )
        summarize_run(run_dir, report=not args.no_report, indent="  ")
        sides[side].append(run_dir)
    index, document = compare_and_write(sides[0], root / "comparison", force=False, versus=sides[1])
    for sentence in verdict_sentences(document):
        print(sentence)
    print(f"comparison: {index}")
    return 0
