"""Small subcommands of the fanbench CLI."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_fanbench_locustfile_prints_the_locustfile_plain_locust_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from loadtest import cli

    assert cli.main(["locustfile"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.name == "locustfile.py"
    assert "ChatUser" in printed.read_text(encoding="utf-8")
