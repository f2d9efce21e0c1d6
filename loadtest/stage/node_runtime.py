"""Node.js execution environments: ``node node_worker.js`` processes for ``nodejs*`` runtimes.

The worker (``node_worker.js``, beside this module, so the wheel carries it)
speaks lambda_worker's protocol over a Unix socket, so the Lambda runtime runs
Python and Node.js environments alike. The AWS SDK v3 that AWS's Node.js 18+
runtimes ship comes from the checkout's ``node_modules`` (package.json installs
it), put on ``NODE_PATH``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

from fanbench_common.resources import checkout_root

NODE_RUNTIME_PREFIX = "nodejs"
WORKER_SCRIPT = Path(__file__).resolve().parent / "node_worker.js"


def is_node(runtime: str) -> bool:
    return runtime.startswith(NODE_RUNTIME_PREFIX)


def node_binary() -> str | None:
    return shutil.which("node")


def node_path(inherited: str = "") -> str:
    """``NODE_PATH`` for the workers: the checkout's node_modules, then any inherited."""
    root = checkout_root()
    entries = [str(root / "node_modules")] if root and (root / "node_modules").is_dir() else []
    entries += [entry for entry in inherited.split(os.pathsep) if entry]
    return os.pathsep.join(entries)


class NodeProcess:
    """A ``node`` worker, with the part of multiprocessing's ``Process`` the runtime uses."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen

    @property
    def pid(self) -> int | None:
        return self.popen.pid

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)


def start_node_worker(
    code_dir: Path, handler: str, log_file: Path, environment: dict[str, str]
) -> tuple[NodeProcess, socket.socket]:
    """Start a worker; returns it and the runtime's end of its channel (blocking: fork+exec)."""
    node = node_binary()
    if node is None:
        raise FileNotFoundError("node is not on PATH: Node.js functions need it")
    ours, theirs = socket.socketpair()
    try:
        with log_file.open("ab") as log:
            popen = subprocess.Popen(
                [node, str(WORKER_SCRIPT), str(theirs.fileno()), str(code_dir), handler],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=environment, pass_fds=(theirs.fileno(),), cwd=code_dir,
            )  # fmt: skip
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    return NodeProcess(popen), ours
