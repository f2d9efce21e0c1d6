"""``fanbench run --variants A B`` (or ``--targets A_URL B_URL``): two sides at once.

Runs one after the other (``fanbench trials``) differ by whatever the host did
between them, and on a shared machine that noise swamps differences of a third.
Here both sides run at the same time: two local stages (or two deployed
targets), the swarm split evenly between them, both halves started together so
their sends interleave in time and feel the same noise. Each side is an
ordinary run directory (ROOT/A-…, ROOT/B-…) whose run.json names its side, so
every delivery is labelled by where it was recorded; the comparison pairs the
sides block by block (``reports/blocked.py``).

A side is ``VARIANT[:KEY=VALUE,...]``: a template parameter (``PostConcurrency=8``),
a Lambda environment variable (``env.AWS_MAX_ATTEMPTS=1``) or a stage fault
(``post_latency_ms=13``) applies to that side only.
"""

from __future__ import annotations

import argparse
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fanbench_common.variants import VARIANTS

SIDES = "AB"
START_WAIT_S = 600.0
"""How long one side's stage may take to come up while the other waits at the start line."""
STOP_WAIT_S = 30.0
"""After Ctrl-C, how long each side may take to stop its swarm and stage."""


@dataclass(frozen=True)
class SideSpec:
    """One side as the user wrote it: ``optimized:PostConcurrency=8,post_latency_ms=13``."""

    label: str
    variant: str
    parameters: dict[str, str] = field(default_factory=dict)
    lambda_env: dict[str, str] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)


def parse_side(spec: str, fault_names: frozenset[str]) -> SideSpec:
    """``VARIANT[:KEY=VALUE,...]``: capitalised keys are template parameters, ``env.NAME`` a
    Lambda environment variable, a fault's name (``post_latency_ms``) that stage fault."""
    variant, _, rest = spec.partition(":")
    if variant not in VARIANTS:
        raise ValueError(f"--variants: unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
    side = SideSpec(spec, variant)
    for pair in filter(None, rest.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--variants {spec!r}: {pair!r} is not KEY=VALUE")
        if key.startswith("env."):
            side.lambda_env[key.removeprefix("env.")] = value
        elif key in fault_names:
            side.faults[key] = value
        elif key[:1].isupper():
            side.parameters[key] = value
        else:
            raise ValueError(
                f"--variants {spec!r}: {key!r} is neither a template parameter (capitalised, "
                f"e.g. PostConcurrency), env.NAME nor a fault ({', '.join(sorted(fault_names))})"
            )
    return side


def side_dir(root: Path, index: int, label: str) -> Path:
    """ROOT/A-optimized, ROOT/B-optimized-PostConcurrency-2: the label, made a safe name."""
    return root / f"{SIDES[index]}-{re.sub(r'[^A-Za-z0-9_.]+', '-', label).strip('-')}"


def default_root() -> Path:
    return Path("runs") / f"sidebyside-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def add_side_by_side_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variants", nargs=2, metavar=("A", "B"),
        help="run two sides at once, the swarm split evenly between them, and compare them "
        "block by block; a side is VARIANT[:KEY=VALUE,...] (e.g. optimized:PostConcurrency=8)",
    )  # fmt: skip
    parser.add_argument(
        "--targets", nargs=2, metavar=("A_URL", "B_URL"),
        help="the same against two deployed stages at once (--variants then only labels them)",
    )  # fmt: skip


def fault_names(args: argparse.Namespace) -> frozenset[str]:
    return frozenset(k.removeprefix("faults__") for k in vars(args) if k.startswith("faults__"))


def validate_sides(args: argparse.Namespace) -> list[SideSpec]:
    """The two sides, or ``ValueError`` naming what cannot be run side by side."""
    if args.target:
        raise ValueError("--variants runs two sides; against deployed stages pass --targets A B")
    if args.variant is not None:
        raise ValueError("--variants A B names both sides; leave out --variant")
    if getattr(args, "expect_workers", 0):
        raise ValueError("--variants does not combine with --expect-workers (yet)")
    if args.users < 2 or args.users % 2:
        raise ValueError("--variants splits --users evenly between the sides: give an even number")
    for url in args.targets or ():
        if urlsplit(url).scheme not in ("ws", "wss"):
            raise ValueError(f"--targets must be ws:// or wss:// URLs, not {url!r}")
    if args.targets and args.targets[0] == args.targets[1]:
        raise ValueError("--targets names one stage twice; an A/A test needs two stacks")
    specs = args.variants or ["unknown", "unknown"]
    if not args.targets:
        return [parse_side(spec, fault_names(args)) for spec in specs]
    sides = [SideSpec(spec, spec) for spec in specs]
    if any(":" in spec for spec in specs):
        raise ValueError("--targets: a deployed stage's settings are its own; label sides only")
    return sides


def side_namespace(
    args: argparse.Namespace, index: int, side: SideSpec, root: Path
) -> argparse.Namespace:
    """``fanbench run``'s arguments for one side: half the users, its own stage settings."""
    values: dict[str, Any] = {
        **vars(args),
        "users": args.users // 2,
        "spawn_rate": args.spawn_rate / 2,  # the swarm's rate, split as its users are
        # A deployed side's label is free text, never a local stage's handler to validate.
        "variant": None if args.targets else side.variant,
        "variant_label": side.label,
        "run_dir": side_dir(root, index, side.label),
        "target": args.targets[index] if args.targets else None,
        "param": [*args.param, *(f"{k}={v}" for k, v in side.parameters.items())],
        "lambda_env": [*args.lambda_env, *(f"{k}={v}" for k, v in side.lambda_env.items())],
        "quiet": args.quiet or index > 0,  # one progress line is enough
        "side_by_side": {"side": SIDES[index], "label": side.label, "of": len(SIDES)},
    }
    for name, value in side.faults.items():
        current = values[f"faults__{name}"]
        values[f"faults__{name}"] = type(current)(value) if current is not None else float(value)
    return argparse.Namespace(**values)


def run_both(
    namespaces: list[argparse.Namespace],
    execute: Callable[[argparse.Namespace, Callable[[], None]], Path],
) -> list[Path]:
    """Execute both sides in threads that wait for each other at the start line.

    A side that fails before the start line breaks the barrier, so the other stops
    waiting and its error (or this one's) reaches the user, never a hang.
    """
    barrier = threading.Barrier(len(namespaces), timeout=START_WAIT_S)
    results: list[Path | None] = [None] * len(namespaces)
    errors: list[BaseException] = []

    def at_start_line() -> None:
        barrier.wait()

    def one(index: int) -> None:
        try:
            results[index] = execute(namespaces[index], at_start_line)
        except threading.BrokenBarrierError as error:
            errors.append(error)
        except BaseException as error:  # handed to the main thread, which raises it
            barrier.abort()
            errors.insert(0, error)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(namespaces))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        # Ctrl-C reached Locust too; let each side stop its stage rather than orphan it.
        barrier.abort()
        for thread in threads:
            thread.join(timeout=STOP_WAIT_S)
        raise
    if errors:
        raise errors[0]
    return [path for path in results if path is not None]


def side_by_side_command(args: argparse.Namespace) -> int:
    """Run both sides, summarise each, write ROOT/comparison/ and print its verdict."""
    from fanbench.run import RunError, execute, require_locust, summarize_run
    from reports.compare import compare_and_write, verdict_sentences

    sides = validate_sides(args)
    require_locust()
    root: Path = (args.run_dir or default_root()).resolve()
    if root.exists() and any(root.iterdir()):
        raise RunError(f"{root} is not empty; choose another --run-dir")
    namespaces = [side_namespace(args, i, side, root) for i, side in enumerate(sides)]
    print(
        f"side by side: A {sides[0].label} and B {sides[1].label}, "
        f"{args.users // 2} users each, sends interleaved",
        flush=True,
    )
    try:
        run_dirs = run_both(namespaces, execute)
    except threading.BrokenBarrierError:
        raise RunError("one side did not reach the start line; see the message above") from None
    for letter, side, run_dir in zip(SIDES, sides, run_dirs, strict=True):
        print(f"{letter}: {side.label}")
        summarize_run(run_dir, report=not args.no_report, indent="  ")
    index, document = compare_and_write(
        [run_dirs[0]], root / "comparison", force=False, versus=[run_dirs[1]], side_by_side=True
    )
    for sentence in verdict_sentences(document):
        print(sentence)
    print(f"comparison: {index}")
    return 0
