"""Small subcommands of the fanbench CLI."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_fanbench_locustfile_prints_the_locustfile_plain_locust_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fanbench import cli

    assert cli.main(["locustfile"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.name == "locustfile.py"
    assert "ChatUser" in printed.read_text(encoding="utf-8")


def _help(*argv: str) -> None:
    from fanbench.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])


def test_run_offers_no_stage_flag_it_would_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    _help("run")
    text = capsys.readouterr().out
    assert "--token" in text
    assert "--auth-token" not in text  # run's token is --token (or $FANBENCH_TOKEN)
    assert "--log-dir" not in text  # run's stage logs go to RUN_DIR/stage


def test_trials_help_lists_neither_target_nor_variant(capsys: pytest.CaptureFixture[str]) -> None:
    _help("trials")
    text = capsys.readouterr().out
    assert "--targets" in text
    options = [line.split()[0] for line in text.splitlines() if line.startswith("  -")]
    assert "--target" not in options
    assert "--variant" not in options
    assert "two local variants" not in text
