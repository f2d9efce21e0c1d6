"""CPU accounting for the stage's process tree (psutil), by role.

The stage runs as one process (gateway + @connections on one asyncio loop)
with children: the DynamoDB emulator (dynalite or moto's server), a
multiprocessing forkserver and, forked from it, one worker per Lambda execution
environment. A worker is recognised
by the log file it keeps open on stdout (``<Function>-<n>.log`` in the stage's
log directory), which is exactly how the runtime names it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

STAGE = "stage"
MOTO = "moto"
DYNALITE = "dynalite"
OTHER = "other"
LAMBDA_PREFIX = "lambda:"
_WORKER_LOG = re.compile(r"^([A-Za-z0-9]+)-\d+\.log$")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def find_stage_root(log_dir: Path, parent: psutil.Process | None = None) -> psutil.Process:
    """The stage process started by this process whose command line names ``log_dir``."""
    parent = parent or psutil.Process()
    wanted = str(log_dir)
    for child in parent.children(recursive=False):
        try:
            cmdline = child.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "loadtest.stage" in cmdline and wanted in cmdline:
            return child
    raise RuntimeError(f"no stage process with --log-dir {wanted} under pid {parent.pid}")


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds per role at one instant."""

    by_role: Mapping[str, float]

    def minus(self, earlier: CpuSample) -> dict[str, float]:
        roles = set(self.by_role) | set(earlier.by_role)
        return {r: self.by_role.get(r, 0.0) - earlier.by_role.get(r, 0.0) for r in roles}


class StageProcesses:
    """Samples CPU time of every process in one stage's tree, grouped by role."""

    def __init__(self, root: psutil.Process, log_dir: Path) -> None:
        self.root = root
        self.log_dir = log_dir.resolve()
        self._roles: dict[int, str] = {root.pid: STAGE}
        self._seen: dict[int, psutil.Process] = {root.pid: root}
        self._last: dict[int, float] = {}

    def _role(self, process: psutil.Process) -> str:
        try:
            cmdline = process.cmdline()
            if "moto.server" in cmdline:
                return MOTO
            if any(part.endswith("dynalite/cli.js") for part in cmdline):
                return DYNALITE
            for opened in process.open_files():
                path = Path(opened.path)
                match = _WORKER_LOG.match(path.name)
                if match and path.parent.resolve() == self.log_dir:
                    return LAMBDA_PREFIX + match.group(1)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        return OTHER

    def sample(self) -> CpuSample:
        """CPU seconds by role; a process that has exited keeps its last reading."""
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for process in tree:
            if process.pid not in self._seen:
                self._seen[process.pid] = process
                self._roles[process.pid] = self._role(process)
            elif self._roles[process.pid] == OTHER:
                # A worker opens its log right after the fork; look again until it has.
                self._roles[process.pid] = self._role(process)
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                self._last[process.pid] = cpu_seconds(process)
        totals: dict[str, float] = {}
        for pid, seconds in self._last.items():
            role = self._roles[pid]
            totals[role] = totals.get(role, 0.0) + seconds
        return CpuSample(totals)

    def lambda_cpu(self, delta: Mapping[str, float], function: str) -> float:
        return float(delta.get(LAMBDA_PREFIX + function, 0.0))
