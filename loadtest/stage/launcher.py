"""Start a local stage in a subprocess from Python: ``with LocalStage(config) as stage: ...``.

The stage runs in its own process group, so stopping it (or a crash of the
caller) leaves no orphaned Lambda workers or emulator behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import psutil

from fanbench_common.errors import FanbenchError
from loadtest.stage.config import AUTH_TOKEN_ENV, StageConfig, config_to_argv, resolve_template
from loadtest.stage.endpoints import READY_KEY, StageEndpoints

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
GROUP_EXIT_TIMEOUT_S = 5.0


class StageError(FanbenchError, RuntimeError):
    """The stage failed to start or stopped unexpectedly."""


def _read_ready_line(stdout: IO[str], timeout_s: float) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = []

    def reader() -> None:
        for line in stdout:
            if line.startswith(f'{{"{READY_KEY}"'):
                found.append(json.loads(line)[READY_KEY])
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return found[0] if found else None


class LocalStage:
    def __init__(self, config: StageConfig | None = None, log_dir: Path | None = None) -> None:
        self.config = config or StageConfig()
        self.log_dir = log_dir or self.config.log_dir
        self._process: subprocess.Popen[str] | None = None
        self._endpoints: StageEndpoints | None = None

    @property
    def endpoints(self) -> StageEndpoints:
        if self._endpoints is None:
            raise StageError("the stage is not running")
        return self._endpoints

    @property
    def ws_url(self) -> str:
        return self.endpoints.ws_url

    def start(self) -> StageEndpoints:
        resolve_template(self.config)  # refuse a template here, in one line, not in the child
        argv = [sys.executable, "-m", "loadtest.stage", *config_to_argv(self.config)]
        if self.log_dir is not None:
            argv += ["--log-dir", str(self.log_dir)]
        environment = {**os.environ, AUTH_TOKEN_ENV: self.config.auth_token}
        self._process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            start_new_session=True, env=environment,
        )  # fmt: skip
        assert self._process.stdout is not None
        info = _read_ready_line(self._process.stdout, STARTUP_TIMEOUT_S)
        if info is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1)  # no ready line and EOF: it is exiting
            exit_code = self._process.poll()
            self.stop()
            if exit_code is not None:
                raise StageError(
                    f"the local stage exited with status {exit_code} before it was ready"
                )
            raise StageError(f"the local stage did not start within {STARTUP_TIMEOUT_S:.0f} s")
        self._endpoints = StageEndpoints.from_ready(info)
        return self._endpoints

    @property
    def pid(self) -> int | None:
        """The stage process's id (its Lambda workers are its descendants)."""
        return self._process.pid if self._process is not None else None

    @property
    def stats_url(self) -> str:
        return f"{self.endpoints.management_url}/_fanbench/stats"

    def stats(self) -> dict[str, Any]:
        """The stage's counters (gateway, @connections, Lambda runtime)."""
        with urllib.request.urlopen(self.stats_url, timeout=10) as response:
            stats: dict[str, Any] = json.load(response)
            return stats

    def invoke_stats(self) -> dict[str, Any]:
        """The Lambda Invoke API's counters (async events accepted, run, retried, dropped)."""
        url = f"{self.endpoints.lambda_url}/_fanbench/invoke-stats"
        with urllib.request.urlopen(url, timeout=10) as response:
            stats: dict[str, Any] = json.load(response)
            return stats

    def stop(self) -> int | None:
        """SIGINT (clean shutdown: $disconnect events run), then SIGKILL the group if needed."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        returncode = process.wait()
        _wait_for_group_exit(process.pid, GROUP_EXIT_TIMEOUT_S)
        if process.stdout is not None:
            process.stdout.close()
        self._process = None
        return returncode

    def __enter__(self) -> LocalStage:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of the group is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (psutil.Error, OSError):
            continue
    return False


def _wait_for_group_exit(pgid: int, timeout_s: float) -> bool:
    """Wait until the group's processes have died: SIGKILL's victims (the forkserver and
    its resource tracker outlive the stage process) take a moment to exit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.01)
    return False


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes (bounded, for tests and tools)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
