"""The real ``fanbench`` CLI, as subprocesses: check, compare, report and their errors.

A user's mistake must end in one ``fanbench: error: ...`` line and a non-zero
exit, never a traceback. The subprocesses start together (interpreter start-up
dominates their time) and each test reads the result of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fanbench.cli import main
from tests.repo import REPO_ROOT as PROJECT_ROOT
from tests.reports.synthetic import build_run

EXIT_FAILED, EXIT_USAGE = 1, 2
Result = subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    corrupt = build_run(root / "corrupt")
    (corrupt / "records" / "deliveries.npz").write_bytes(b"not a zip file")
    headless = build_run(root / "headless")
    (headless / "run.json").unlink()
    return {
        "good": build_run(root / "good", variant="baseline", latency_ms=10.0),
        "lossy": build_run(root / "lossy", variant="optimized", latency_ms=5.0,
                           drop=[(0, 0, 1), (1, 1, 2)]),
        "bigger": build_run(root / "bigger", variant="optimized", scenario={"message_bytes": 1024}),
        "corrupt": corrupt,
        "headless": headless,
        "nowhere": root / "nowhere",
        "out": root / "out",
    }  # fmt: skip


@pytest.fixture(scope="module")
def cli(runs: dict[str, Path]) -> dict[str, Result]:
    """Every command line below, run at once as ``python -m fanbench ...``."""
    commands: dict[str, list[str | Path]] = {
        "check pass": ["check", runs["good"], "--max-p99-ms", "10", "--max-loss-rate", "0"],
        "check fail": ["check", runs["lossy"], "--max-p50-ms", "4", "--max-loss-rate", "0.005"],
        "check no threshold": ["check", runs["good"]],
        "compare mismatch": ["compare", runs["good"], runs["bigger"], "--out", runs["out"] / "no"],
        "report nowhere": ["report", runs["nowhere"]],
        "check corrupt": ["check", runs["corrupt"], "--max-p99-ms", "1"],
        "unknown flag": ["check", runs["good"], "--max-p95-ms", "3"],
    }
    started = {
        name: subprocess.Popen(
            [sys.executable, "-m", "fanbench", *map(str, args)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )
        for name, args in commands.items()
    }
    results = {}
    for name, process in started.items():
        try:
            stdout, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
        results[name] = subprocess.CompletedProcess(
            process.args, process.returncode, stdout, stderr
        )
    return results


def assert_one_line_error(result: Result, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fanbench: error: "), lines[0]
    for word in words:
        assert word in lines[0]


def test_check_passes(cli: dict[str, Result]) -> None:
    result = cli["check pass"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PASS: ")


def test_check_fails_with_one_line_per_missed_threshold(cli: dict[str, Result]) -> None:
    result = cli["check fail"]
    assert result.returncode == EXIT_FAILED, result.stderr
    assert result.stdout.splitlines() == [
        "FAIL: p50 fan-out latency 5.0 ms > 4 ms",
        "FAIL: loss rate 1.00 % > 0.5 % (2 of 200 expected deliveries lost)",
    ]
    assert result.stderr == ""


def test_check_without_a_threshold_is_a_one_line_error(cli: dict[str, Result]) -> None:
    assert_one_line_error(cli["check no threshold"], "--max-")
    assert cli["check no threshold"].returncode == EXIT_USAGE


def test_compare_refuses_different_scenarios_in_one_line(
    cli: dict[str, Result], runs: dict[str, Path]
) -> None:
    result = cli["compare mismatch"]
    assert_one_line_error(result, "message_bytes 64 (baseline) vs 1024 (optimized)", "--force")
    assert not (runs["out"] / "no").exists()


def test_a_missing_run_directory_is_named(cli: dict[str, Result], runs: dict[str, Path]) -> None:
    assert_one_line_error(cli["report nowhere"], str(runs["nowhere"]), "no such run directory")


def test_a_corrupt_run_directory_is_named(cli: dict[str, Result], runs: dict[str, Path]) -> None:
    result = cli["check corrupt"]
    assert_one_line_error(result, str(runs["corrupt"]), "records/deliveries.npz is corrupt")


def test_an_unknown_flag_is_an_argparse_usage_error(cli: dict[str, Result]) -> None:
    result = cli["unknown flag"]
    assert result.returncode == EXIT_USAGE
    assert "usage: fanbench" in result.stderr
    assert "unrecognized arguments: --max-p95-ms" in result.stderr
    assert "Traceback" not in result.stderr


# The same entry point in-process (interpreter start-up is most of a subprocess's cost).


def test_compare_writes_the_comparison(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = runs["out"] / "ok"
    assert main(["compare", str(runs["good"]), str(runs["lossy"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"comparison: {out / 'index.html'}\n"
    assert (out / "comparison.md").is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["check", "{good}", "--max-loss-rate", "5"], "fraction (0.01 = 1 %)"),
        (["check", "{good}", "--max-duplicates", "-1"], "--max-duplicates must be a number >= 0"),
        (["compare", "{good}"], "at least two run directories"),
        (["compare", "{good}", "{nowhere}"], "no such run directory"),
        (["check", "{nowhere}", "--max-p99-ms", "1"], "no such run directory"),
        (["report", "{corrupt}"], "records/deliveries.npz is corrupt"),
        (["report", "{headless}"], "missing run.json"),
        (["check", "{headless}", "--max-p99-ms", "1"], "missing run.json"),
    ],
)
def test_more_user_errors_are_one_line(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    code = main([arg.format(**{k: str(v) for k, v in runs.items()}) for arg in args])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.count("\n") == 1
    assert err.startswith("fanbench: error: ")
    assert words in err


@pytest.mark.parametrize("args", [["compare", "a", "b", "--frobnicate"], ["report"], ["check"]])
def test_bad_command_lines_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == EXIT_USAGE
    assert "usage: fanbench" in capsys.readouterr().err


def test_compare_takes_several_runs_a_side(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    more = [
        build_run(tmp_path / "g2", variant="baseline", latency_ms=11.0),
        build_run(tmp_path / "l2", variant="optimized", latency_ms=5.5),
    ]
    out = runs["out"] / "sides"
    args = ["compare", runs["good"], more[0], "--vs", runs["lossy"], more[1], "--out", out]
    assert main([str(arg) for arg in args]) == 0
    assert capsys.readouterr().out == f"comparison: {out / 'index.html'}\n"
    markdown = (out / "comparison.md").read_text()
    assert "optimized p50 latency is " in markdown
    assert "2 vs 2 runs, between-run" in markdown


def test_compare_with_an_empty_side_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["compare", "a", "--vs"])
    assert exited.value.code == EXIT_USAGE
    assert "--vs: expected at least one argument" in capsys.readouterr().err
