"""A helper process that speaks JSON lines: one ready line, then one reply per command.

Used for the receiver swarm and the generator benchmark's broadcast server.
Every read is bounded in time; closing stdin asks the child to exit, and a
child that does not exit within ``EXIT_TIMEOUT_S`` is killed.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Sequence
from typing import IO, Any

from bench import REPO_ROOT

EXIT_TIMEOUT_S = 10.0


class ChildError(RuntimeError):
    """The child process did not answer in time, or answered nonsense."""


class JsonLineChild:
    """``with JsonLineChild(argv, ready_timeout_s) as child: child.command("count")``."""

    def __init__(self, argv: Sequence[str], ready_timeout_s: float, reply_timeout_s: float = 30.0):
        self.argv = list(argv)
        self.ready_timeout_s = ready_timeout_s
        self.reply_timeout_s = reply_timeout_s
        self.ready: dict[str, Any] = {}
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ChildError("the child is not running")
        return self._process.pid

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith("{"):
                self._lines.put(line)

    def reply(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise ChildError(f"{self.argv[2:4]} did not answer within {timeout_s:.0f} s") from None
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError as error:
            raise ChildError(f"unreadable reply {line[:200]!r}") from error
        return answer

    def __enter__(self) -> JsonLineChild:
        self._process = subprocess.Popen(
            self.argv, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._process.stdout is not None
        threading.Thread(target=self._pump, args=(self._process.stdout,), daemon=True).start()
        try:
            self.ready = self.reply(self.ready_timeout_s)
        except ChildError:
            self.__exit__()
            raise
        return self

    def command(self, text: str, timeout_s: float | None = None) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdin is None:
            raise ChildError("the child is not running")
        process.stdin.write(text + "\n")
        process.stdin.flush()
        return self.reply(timeout_s if timeout_s is not None else self.reply_timeout_s)

    def __exit__(self, *_exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=EXIT_TIMEOUT_S)
        except (subprocess.TimeoutExpired, OSError):
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
