"""``fanbench run`` and ``fanbench stage`` given wrong flags and unreachable targets.

Each is the real CLI in a subprocess: a user's mistake ends in one
``fanbench: error: ...`` line on stderr and a non-zero exit, never a traceback,
and a refused run leaves no run directory behind. (argparse's own usage errors
exit 2 with the usage text.) The report/compare/check subcommands' errors,
missing and corrupt run directories included, are in tests/reports/test_cli_reports.py;
one more corruption (a truncated run.json) is here.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.reliability.support import fanbench, subprocess_env
from tests.repo import REPO_ROOT as PROJECT_ROOT

EXIT_FAILED, EXIT_USAGE = 1, 2
Result = subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    exit_code: int
    words: tuple[str, ...] = ()
    leaves_no: str | None = None
    """A run directory (placeholder name) the refused command must not create."""


class _NotWebSocket(BaseHTTPRequestHandler):
    """An HTTP/1.1 server that answers 404 to everything, the WebSocket upgrade included."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("cli-errors")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    http = ThreadingHTTPServer(("127.0.0.1", 0), _NotWebSocket)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    existing = root / "existing"
    existing.mkdir()
    (existing / "run.json").write_text("{}")
    truncated = root / "truncated"
    (truncated / "records").mkdir(parents=True)
    (truncated / "run.json").write_text('{"schema_version": 1, "scen')
    a_file = root / "a-file"
    a_file.write_text("not a run directory")
    try:
        yield {
            "root": str(root),
            "closed": f"127.0.0.1:{closed_port}",
            "busy_port": str(busy.getsockname()[1]),
            "http": f"127.0.0.1:{http.server_address[1]}",
            "existing": str(existing),
            "truncated": str(truncated),
            "a_file": str(a_file),
        }
    finally:
        http.shutdown()
        http.server_close()
        busy.close()


CASES: dict[str, Case] = {
    "no users": Case(("run", "--users", "0", "--run-dir", "{root}/r1"), EXIT_USAGE,
                     ("--users must be positive",), "r1"),
    "negative duration": Case(("run", "--duration", "-5", "--run-dir", "{root}/r2"), EXIT_USAGE,
                              ("--duration must be positive",), "r2"),
    "unknown variant": Case(("run", "--variant", "nope", "--run-dir", "{root}/r3"), EXIT_USAGE,
                            ("variant must be baseline, sequential, optimized, sharded or "
                             "tutorial",), "r3"),
    "http target": Case(("run", "--target", "http://{http}/local", "--run-dir", "{root}/r4"),
                        EXIT_USAGE, ("--target must be a ws:// or wss:// URL",), "r4"),
    "nothing listens": Case(("run", "--target", "ws://{closed}/local", "--run-dir", "{root}/r5"),
                            EXIT_FAILED, ("cannot connect to ws://", "refused"), "r5"),
    "not a websocket server": Case(
        ("run", "--target", "ws://{http}/local", "--run-dir", "{root}/r6"), EXIT_FAILED,
        ("refused the WebSocket handshake with HTTP 404",), "r6"),
    "run directory taken": Case(("run", "--run-dir", "{existing}"), EXIT_FAILED,
                                ("already holds a run",)),
    "run directory impossible": Case(("run", "--run-dir", "{a_file}/run"), EXIT_FAILED,
                                     ("Not a directory",)),
    "bad lambda env": Case(("run", "--lambda-env", "AWS_MAX_ATTEMPTS", "--run-dir", "{root}/r7"),
                           EXIT_USAGE, ("--lambda-env wants NAME=VALUE",), "r7"),
    "rate over one": Case(("run", "--post-failure-rate", "1.5", "--run-dir", "{root}/r8"),
                          EXIT_USAGE, ("post_failure_rate must be within 0..1",), "r8"),
    "rates add up past one": Case(
        ("run", "--post-failure-rate", "0.6", "--throttle-rate", "0.6", "--run-dir", "{root}/r9"),
        EXIT_USAGE, ("add up to more than 1",), "r9"),
    "negative latency": Case(("stage", "--post-latency-ms", "-1"), EXIT_USAGE,
                             ("post_latency_ms must not be negative",)),
    "stage without its DynamoDB": Case(("stage", "--dynamodb-endpoint", "http://{closed}"),
                                       EXIT_FAILED, ("cannot use DynamoDB at http://",)),
    "stage port taken": Case(("stage", "--port", "{busy_port}"), EXIT_FAILED,
                             ("address already in use",)),
    "truncated run.json": Case(("report", "{truncated}"), EXIT_USAGE,
                               ("run.json is not valid JSON",)),
    "a file for a run directory": Case(("report", "{a_file}"), EXIT_USAGE,
                                       ("no such run directory",)),
}  # fmt: skip
USAGE_CASES: dict[str, tuple[str, ...]] = {
    "unknown run flag": ("run", "--frobnicate"),
    "not a number": ("run", "--users", "many"),
    "unknown stage flag": ("stage", "--frobnicate"),
    "no subcommand": (),
}


def _run(args: tuple[str, ...]) -> Result:
    return subprocess.run(
        fanbench(*args), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
        env=subprocess_env(), stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def results(places: dict[str, str]) -> dict[str, Result]:
    """Every command line above, a few at a time (interpreter start-up dominates)."""
    commands = {name: case.args for name, case in CASES.items()} | USAGE_CASES
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {
            name: pool.submit(_run, tuple(arg.format(**places) for arg in args))
            for name, args in commands.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_a_mistake_is_one_line_and_a_non_zero_exit(
    name: str, results: dict[str, Result], places: dict[str, str]
) -> None:
    case, result = CASES[name], results[name]
    assert result.returncode == case.exit_code, result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fanbench: error: "), lines[0]
    for word in case.words:
        assert word in lines[0]
    if case.leaves_no is not None:
        assert not (Path(places["root"]) / case.leaves_no).exists(), "a refused run left a dir"


def test_a_stage_that_cannot_start_ends_the_run_without_a_traceback(
    places: dict[str, str],
) -> None:
    """The stage's own one-line reason, then the run's: no traceback, exit 1."""
    result = _run(
        ("run", "--dynamodb-endpoint", f"http://{places['closed']}",
         "--run-dir", f"{places['root']}/r10", "--users", "2", "--duration", "2"),
    )  # fmt: skip
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"fanbench stage: error: cannot use DynamoDB at http://{places['closed']}: "
        f'Could not connect to the endpoint URL: "http://{places["closed"]}/"',
        "fanbench: error: the local stage exited with status 1 before it was ready",
    ]


@pytest.mark.parametrize("name", list(USAGE_CASES))
def test_a_malformed_command_line_gets_usage_and_exit_2(
    name: str, results: dict[str, Result]
) -> None:
    result = results[name]
    assert result.returncode == EXIT_USAGE
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("usage: fanbench")
    assert lines[-1].startswith("fanbench")
    assert ": error: " in lines[-1]
