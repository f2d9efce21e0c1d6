"""The soak benchmark (``python -m bench.soak``), run for a few seconds so it stays runnable.

The real soak takes 10 minutes and is not part of the suite; this proves its
machinery: it runs a fault-free swarm, samples the stage's process tree and the
generator, judges flatness and loss, records machine and versions, and leaves no
process behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

from tests.reliability.support import subprocess_env
from tests.repo import REPO_ROOT as PROJECT_ROOT


def test_a_short_soak_samples_memory_judges_it_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--minutes", "0.2", "--settle-in", "3",
         "--sample-interval", "0.5", "--run-dir", str(run_dir), "--json", str(out), "--quiet"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=150, env=subprocess_env(),
        check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    soak = json.loads(out.read_text())
    assert result.returncode == (0 if soak["passed"] else 1), result.stdout
    assert soak["counts"]["expected"] > 0
    assert soak["counts"]["lost"] == 0
    figures = soak["figures"]
    assert figures["window_samples"] >= 6
    assert figures["stage_first_mib"] > 0
    assert figures["locust_first_mib"] > 0
    assert figures["stage_processes_first"] >= 4  # gateway, emulator, forkserver, workers
    assert {"cpu_model", "cores"} <= set(soak["machine"])
    assert {"locust", "boto3", "websockets"} <= set(soak["versions"])
    assert "stage RSS (whole tree)" in result.stdout
    # Nothing the soak started is still running.
    leftovers = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(run_dir) in cmdline:
            leftovers.append(cmdline)
    assert leftovers == []
