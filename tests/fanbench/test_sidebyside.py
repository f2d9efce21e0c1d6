"""``fanbench run --variants A B``: side specs, the even split, the common start line, and
one short real run of two local stages side by side."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fanbench.cli import build_parser
from fanbench.sidebyside import (
    SideSpec,
    fault_names,
    parse_side,
    run_both,
    side_dir,
    side_namespace,
    validate_sides,
)
from fanbench_common.rundir import read_run
from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from tests.repo import REPO_ROOT
from tests.stage.support import running_stage

FAULTS = frozenset({"post_latency_ms", "drop_rate"})


def parsed(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_a_side_carries_parameters_environment_and_faults() -> None:
    side = parse_side("optimized:PostConcurrency=8,env.AWS_MAX_ATTEMPTS=1,post_latency_ms=13",
                      FAULTS)  # fmt: skip
    assert side == SideSpec(
        "optimized:PostConcurrency=8,env.AWS_MAX_ATTEMPTS=1,post_latency_ms=13",
        "optimized",
        parameters={"PostConcurrency": "8"},
        lambda_env={"AWS_MAX_ATTEMPTS": "1"},
        faults={"post_latency_ms": "13"},
    )
    assert parse_side("baseline", FAULTS) == SideSpec("baseline", "baseline")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fastest", "unknown variant 'fastest'"),
        ("optimized:PostConcurrency", "is not KEY=VALUE"),
        ("optimized:postconcurrency=8", "neither a template parameter"),
    ],
)
def test_a_malformed_side_is_refused_by_name(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_side(spec, FAULTS)


def test_each_side_gets_half_the_swarm_and_only_its_own_settings(tmp_path: Path) -> None:
    args = parsed("--variants", "optimized", "optimized:PostConcurrency=2,post_latency_ms=13",
                  "--users", "40", "--spawn-rate", "8", "--param", "ScanSegments=2")  # fmt: skip
    sides = validate_sides(args)
    a, b = (side_namespace(args, i, side, tmp_path) for i, side in enumerate(sides))
    assert (a.users, b.users, a.spawn_rate, b.spawn_rate) == (20, 20, 4.0, 4.0)
    assert (a.variant, b.variant) == ("optimized", "optimized")
    assert b.variant_label == "optimized:PostConcurrency=2,post_latency_ms=13"
    assert (a.param, b.param) == (["ScanSegments=2"], ["ScanSegments=2", "PostConcurrency=2"])
    assert (a.faults__post_latency_ms, b.faults__post_latency_ms) == (0.0, 13.0)
    assert a.run_dir == tmp_path / "A-optimized"
    assert b.run_dir == side_dir(tmp_path, 1, sides[1].label)
    assert b.run_dir.name == "B-optimized-PostConcurrency-2-post_latency_ms-13"
    assert (a.side_by_side["side"], b.side_by_side["side"]) == ("A", "B")
    assert (a.quiet, b.quiet) == (False, True)  # one progress line
    assert "post_latency_ms" in fault_names(args)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "5"], "even number"),
        (["--variant", "baseline"], "leave out --variant"),
        (["--target", "ws://127.0.0.1:1/x"], "pass --targets"),
        (["--targets", "ws://127.0.0.1:1/x", "ws://127.0.0.1:1/x"], "one stage twice"),
        (["--targets", "http://a/x", "ws://b/x"], "ws:// or wss://"),
    ],
)
def test_what_cannot_run_side_by_side_is_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_sides(parsed("--variants", "optimized", "baseline", *argv))


def test_deployed_sides_take_labels_only() -> None:
    args = parsed("--targets", "wss://a.invalid/p", "wss://b.invalid/p",
                  "--variants", "optimized", "optimized:PostConcurrency=2")  # fmt: skip
    with pytest.raises(ValueError, match="label sides only"):
        validate_sides(args)


def test_both_sides_start_together(tmp_path: Path) -> None:
    started: list[float] = []
    lock = threading.Lock()

    def execute(args: argparse.Namespace, ready: Callable[[], None]) -> Path:
        time.sleep(0.3 if args.side == "A" else 0.0)  # A's stage is slower to come up
        ready()
        with lock:
            started.append(time.monotonic())
        return Path(args.side)

    paths = run_both([argparse.Namespace(side="A"), argparse.Namespace(side="B")], execute)
    assert paths == [Path("A"), Path("B")]
    assert max(started) - min(started) < 0.1


def test_a_side_that_fails_to_start_releases_the_other() -> None:
    def execute(args: argparse.Namespace, ready: Callable[[], None]) -> Path:
        if args.side == "B":
            raise RuntimeError("B's stage did not start")
        ready()  # would wait START_WAIT_S for B without the barrier's abort
        return Path(args.side)

    began = time.monotonic()
    with pytest.raises(RuntimeError, match="B's stage did not start"):
        run_both([argparse.Namespace(side="A"), argparse.Namespace(side="B")], execute)
    assert time.monotonic() - began < 10


@pytest.mark.timeout(300)
def test_two_local_stages_side_by_side(tmp_path: Path) -> None:
    """Real stages, real clients: both sides send at the same time, each run directory says
    which side it is, and the comparison pairs them block by block with a detectable change."""
    root = tmp_path / "sbs"
    command = [
        sys.executable, "-m", "fanbench", "run",
        "--variants", "optimized", "optimized:post_latency_ms=15",
        "--users", "6", "--spawn-rate", "20", "--duration", "8", "--send-interval", "0.25",
        "--warmup", "1", "--drain", "1", "--settle", "0.5", "--quiet", "--no-report",
        "--run-dir", str(root),
    ]  # fmt: skip
    done = _fanbench(command, tmp_path)
    a, b = read_run(root / "A-optimized"), read_run(root / "B-optimized-post_latency_ms-15")
    assert a.meta["side_by_side"]["side"] == "A"
    assert b.meta["side_by_side"]["label"] == "optimized:post_latency_ms=15"
    assert b.meta["variant"] == "optimized:post_latency_ms=15"
    assert len(a.membership["client"]) == len(b.membership["client"]) == 3
    # Interleaved in time: the sides' sending spans overlap nearly wholly.
    spans = [(int(np.min(r.sends["sent_ns"])), int(np.max(r.sends["sent_ns"]))) for r in (a, b)]
    overlap = min(s[1] for s in spans) - max(s[0] for s in spans)
    assert overlap > 0.8 * min(s[1] - s[0] for s in spans)
    doc = json.loads((root / "comparison" / "comparison.json").read_text())
    (delta,) = doc["deltas"]
    assert delta["side_by_side"] is True
    assert delta["blocks"]["count"] >= 2
    assert "side by side" in delta["sentences"][0]
    assert "this run could have seen" in done.stdout
    assert (root / "comparison" / "blocks.png").is_file()
    assert "one run a side" not in (root / "comparison" / "comparison.md").read_text()


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStage, ...]]:
    """Two running stages standing in for two deployed stacks."""
    with contextlib.ExitStack() as stack:
        yield tuple(
            stack.enter_context(running_stage(StageConfig(), tmp_path_factory.mktemp(name)))
            for name in ("stack-a", "stack-b")
        )


@pytest.mark.timeout(300)
def test_two_deployed_targets_side_by_side(
    two_stages: tuple[LocalStage, ...], tmp_path: Path
) -> None:
    a_stage, b_stage = two_stages
    root = tmp_path / "targets"
    command = [
        sys.executable, "-m", "fanbench", "run",
        "--targets", a_stage.ws_url, b_stage.ws_url, "--variants", "optimized", "candidate",
        "--users", "4", "--spawn-rate", "20", "--duration", "5", "--send-interval", "0.5",
        "--warmup", "1", "--drain", "1", "--settle", "0.5", "--quiet", "--no-report",
        "--run-dir", str(root),
    ]  # fmt: skip
    done = _fanbench(command, tmp_path)
    a, b = read_run(root / "A-optimized"), read_run(root / "B-candidate")
    assert (a.meta["target"], b.meta["target"]) == (a_stage.ws_url, b_stage.ws_url)
    assert (a.meta["variant"], b.meta["variant"]) == ("optimized", "candidate")
    assert (a.meta["stage"]["kind"], b.meta["side_by_side"]["side"]) == ("remote", "B")
    assert "candidate p50 latency" in done.stdout


def _fanbench(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a fanbench command line from ``cwd``; it must succeed."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=280,
        env={**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done
