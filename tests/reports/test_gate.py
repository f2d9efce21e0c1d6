"""The threshold gate: each limit at its boundary, several failures, nothing to measure."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fanbench.cli import main
from fanbench_common.rundir import read_run
from reports.analysis import analyze
from reports.gate import Thresholds, failures
from reports.summary import Summary
from tests.reports.synthetic import build_run

# 5 clients x 10 messages x 4 recipients = 200 expected deliveries, each after exactly 10 ms.
DROPPED = [(0, 0, 1), (1, 3, 2)]  # 2 of 200 lost: a loss rate of exactly 0.01
DUPLICATED = [(2, 1, 3), (3, 2, 4), (4, 5, 0)]


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> Summary:
    path = build_run(
        tmp_path_factory.mktemp("gate") / "run", drop=DROPPED, duplicate=DUPLICATED, errors=4
    )
    return analyze(read_run(path))


def test_the_synthetic_run_has_the_figures_the_boundaries_assume(summary: Summary) -> None:
    assert summary.latency_ms.from_sent.p50 == 10.0
    assert summary.latency_ms.from_sent.p99 == 10.0
    assert (summary.counts.lost, summary.counts.expected) == (2, 200)
    assert summary.counts.duplicates == 3
    assert summary.counts.error_frames == 4


@pytest.mark.parametrize(
    ("passing", "failing", "line"),
    [
        (Thresholds(max_p50_ms=10), Thresholds(max_p50_ms=9.9),
         "p50 fan-out latency 10.0 ms > 9.9 ms"),
        (Thresholds(max_p99_ms=10), Thresholds(max_p99_ms=9.99),
         "p99 fan-out latency 10.0 ms > 9.99 ms"),
        (Thresholds(max_loss_rate=0.01), Thresholds(max_loss_rate=0.0099),
         "loss rate 1.00 % > 0.99 % (2 of 200 expected deliveries lost)"),
        (Thresholds(max_duplicates=3), Thresholds(max_duplicates=2), "duplicate receipts 3 > 2"),
        (Thresholds(max_error_frames=4), Thresholds(max_error_frames=3), "error frames 4 > 3"),
    ],
)  # fmt: skip
def test_each_limit_passes_at_equality_and_fails_just_below(
    summary: Summary, passing: Thresholds, failing: Thresholds, line: str
) -> None:
    assert failures(summary, passing) == []
    assert failures(summary, failing) == [line]


def test_every_missed_limit_gets_its_own_line(summary: Summary) -> None:
    lines = failures(
        summary,
        Thresholds(
            max_p50_ms=5, max_p99_ms=5, max_loss_rate=0, max_duplicates=0, max_error_frames=0
        ),
    )
    assert lines == [
        "p50 fan-out latency 10.0 ms > 5 ms",
        "p99 fan-out latency 10.0 ms > 5 ms",
        "loss rate 1.00 % > 0 % (2 of 200 expected deliveries lost)",
        "duplicate receipts 3 > 0",
        "error frames 4 > 0",
    ]


def test_a_value_just_over_its_limit_never_prints_equal_to_it(summary: Summary) -> None:
    latency = replace(
        summary.latency_ms, from_sent=replace(summary.latency_ms.from_sent, p99=150.04)
    )
    nudged = replace(summary, latency_ms=latency)
    assert failures(nudged, Thresholds(max_p99_ms=150)) == [
        "p99 fan-out latency 150.04 ms > 150 ms"
    ]


def test_no_measured_deliveries_fails_latency_limits_with_a_reason(tmp_path: Path) -> None:
    # Every send falls in the warm-up, so no latency is measured; loss is still accounted.
    summary = analyze(read_run(build_run(tmp_path / "run", warmup_s=60.0)))
    assert summary.latency_ms.deliveries_measured == 0
    lines = failures(summary, Thresholds(max_p50_ms=1000, max_p99_ms=1000, max_loss_rate=0.5))
    assert lines == [
        "p50 fan-out latency unknown: no deliveries were measured (limit 1000 ms)",
        "p99 fan-out latency unknown: no deliveries were measured (limit 1000 ms)",
    ]


def test_no_expected_deliveries_fails_the_loss_limit(tmp_path: Path) -> None:
    summary = analyze(read_run(build_run(tmp_path / "run", messages_per_sender=0)))
    assert failures(summary, Thresholds(max_loss_rate=0.01)) == [
        "loss rate unknown: no deliveries were expected (limit 1 %)"
    ]
    assert failures(summary, Thresholds(max_duplicates=0, max_error_frames=0)) == []


def test_empty_is_true_only_without_any_limit() -> None:
    assert Thresholds().empty()
    assert not Thresholds(max_duplicates=0).empty()
    assert not Thresholds(max_loss_rate=0.0).empty()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_p99_ms": -1.0}, "--max-p99-ms must be a number >= 0"),
        ({"max_p50_ms": float("nan")}, "--max-p50-ms must be a number >= 0"),
        ({"max_duplicates": -2}, "--max-duplicates must be a number >= 0"),
        ({"max_loss_rate": 5.0}, "--max-loss-rate is a fraction (0.01 = 1 %), got 5"),
    ],
)
def test_impossible_limits_are_refused_in_the_users_words(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Thresholds(**kwargs)


def _incomplete(path: Path) -> Path:
    """The run as if one worker's records never arrived (the banner's warning)."""
    meta_file = path / "run.json"
    meta = json.loads(meta_file.read_text())
    meta["collection"] = {"complete": False}
    meta_file.write_text(json.dumps(meta))
    return path


def test_a_run_the_banner_calls_invalid_fails_unless_allowed(tmp_path: Path) -> None:
    summary = analyze(read_run(_incomplete(build_run(tmp_path / "run", health_cpu=97.0))))
    limits = Thresholds(max_loss_rate=0.5)
    assert failures(summary, limits) == [
        "run is not valid: load generator CPU reached 97 % "
        "(pass --allow-invalid to check it anyway)",
        "run is not valid: not every worker's records were collected "
        "(pass --allow-invalid to check it anyway)",
    ]
    assert failures(summary, limits, allow_invalid=True) == []


def test_check_fails_an_invalid_run_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(_incomplete(build_run(tmp_path / "run")))
    assert main(["check", run, "--max-loss-rate", "0"]) == 1
    assert capsys.readouterr().out == (
        "FAIL: run is not valid: not every worker's records were collected "
        "(pass --allow-invalid to check it anyway)\n"
    )
    assert main(["check", run, "--max-loss-rate", "0", "--allow-invalid"]) == 0
    assert capsys.readouterr().out.startswith("PASS: ")
