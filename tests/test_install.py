"""The tool as people install it: a wheel in a fresh virtualenv, used from another directory.

Builds the wheel from this checkout, installs it (with its dependencies, from the
package index) into a new virtualenv, and runs the main job and the report commands
from a temporary directory, with relative paths. Nothing of the checkout is
importable there: the handlers and the template must come from the wheel.

uv builds and installs: it resolves the same wheel's requirements as pip does, in
seconds rather than the minute pip took (the suite's largest single cost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.repo import REPO_ROOT

pytestmark = pytest.mark.timeout(600)

INSTALL_TIMEOUT_S = 420
RUN_TIMEOUT_S = 150


class Installed:
    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = root
        self.workdir = workdir
        self.bin = root / "bin"

    def environment(self) -> dict[str, str]:
        # No PYTHONPATH and no checkout on the path: only what the wheel installed. Bytecode is
        # written as modules are first imported, as on a machine without PYTHONDONTWRITEBYTECODE
        # (compiling all of site-packages at install cost 26 CPU-seconds; this, about 4).
        hidden = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        return {**env, "MPLBACKEND": "Agg", "PATH": f"{self.bin}:{env.get('PATH', '')}"}

    def run(self, *argv: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]], cwd=self.workdir, env=self.environment(),
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    wheels = base / "dist"
    uv = [sys.executable, "-m", "uv", "--quiet"]
    subprocess.run(
        [*uv, "build", "--wheel", "--out-dir", str(wheels), str(REPO_ROOT)],
        check=True, timeout=INSTALL_TIMEOUT_S, capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("fanbench-*.whl")
    environment = base / "venv"
    venv.create(environment, with_pip=False)
    python = str(environment / "bin" / "python")
    subprocess.run(
        [*uv, "pip", "install", "--python", python, str(wheel)],
        check=True, timeout=INSTALL_TIMEOUT_S, capture_output=True,
    )  # fmt: skip
    workdir = base / "elsewhere"
    workdir.mkdir()
    return Installed(environment, workdir)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_installed_packages_and_app_come_from_the_wheel(installed: Installed) -> None:
    probe = (
        "import json, fanbench, loadtest, reports, fanbench_common.resources as r; "
        "app = r.bundled_app(); "
        "print(json.dumps([loadtest.__file__, reports.__file__, str(app.template), "
        "str(app.handlers), str(r.tutorial_app().template), str(r.unawaited_app().template), "
        "str(fanbench.LOCUSTFILE)]))"
    )
    *paths, locustfile = json.loads(_ok(installed.run("python", "-c", probe)))
    # The application package, and the locustfile its swarms run, come from the wheel too.
    assert Path(locustfile).is_file(), locustfile
    assert Path(locustfile).is_relative_to(installed.root), locustfile
    assert _ok(installed.run("fanbench", "locustfile")).strip() == locustfile
    for path in paths:
        assert Path(path).is_relative_to(installed.root), path
        assert not Path(path).is_relative_to(REPO_ROOT), path
    handlers = Path(paths[3])
    assert {"connect.py", "sendmessage.py", "aws_limits.py"} <= {p.name for p in handlers.iterdir()}
    # Node.js functions run in this script, which the wheel must carry.
    assert (Path(paths[0]).parent / "stage" / "node_worker.js").is_file()
    # --variant tutorial's app, and the un-awaited example, travel with it.
    for template in map(Path, paths[4:]):
        assert template.is_file(), template
    assert (Path(paths[4]).parent / "src" / "sendmessage.mjs").is_file()


def test_run_report_check_and_compare_from_another_directory(installed: Installed) -> None:
    stdout = _ok(
        installed.run(
            "fanbench",
            "run",
            "--users",
            "3",
            "--duration",
            "4",
            "--send-interval",
            "0.5",
            "--warmup",
            "0",
            "--run-dir",
            "myrun",
            "--quiet",
        )
    )
    run_dir = installed.workdir / "myrun"
    assert (run_dir / "run.json").is_file(), stdout
    assert (run_dir / "report" / "index.html").is_file()
    assert f"run directory: {run_dir}" in stdout
    assert "lost 0 " in stdout, stdout

    assert "report:" in _ok(installed.run("fanbench", "report", "myrun"))
    # The installed gate reads the run; whether a busy host left the run valid (receive-loop
    # lag) is the gate's own rule, tested in tests/reports/test_cli_reports.py.
    check = ("check", "myrun", "--max-loss-rate", "0.5", "--allow-invalid")
    assert "PASS" in _ok(installed.run("fanbench", *check))
    _ok(installed.run("fanbench", "compare", "myrun", "myrun", "--out", "cmp"))
    assert (installed.workdir / "cmp").is_dir()


def test_a_relative_path_that_does_not_exist_is_one_line(installed: Installed) -> None:
    result = installed.run("fanbench", "report", "no-such-run")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert "no-such-run" in result.stderr
