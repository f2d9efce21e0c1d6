"""The AWS tutorial's walk-through with the real npm ``wscat``, against both variants.

wscat exits at once, silently and with status 0, when its stdin is closed or
empty (it ignores ``-w`` then), so each wscat gets a pipe that stays open until the
test is done with it. wscat also drops, silently, any line typed before its
WebSocket is open (it listens for lines only from then on), and the table holds
an id before the handshake completes; so each wscat first says something that
is not JSON until ``$default`` answers it, which is the tutorial's first step too.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from tests.repo import REPO_ROOT as PROJECT_ROOT
from tests.stage.support import DEFAULT_HINT, ID_IN_REPLY, running_stage, table_ids, wait_for

WSCAT = PROJECT_ROOT / "node_modules" / ".bin" / "wscat"


class Wscat:
    """One ``wscat -c URL`` process with stdin held open and stdout read line by line."""

    def __init__(self, url: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [str(WSCAT), "-c", url, *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            # Without a terminal wscat prints incoming frames one per line; strip any prompt.
            self.lines.put(raw.decode("utf-8", "replace").strip().removeprefix(">").strip())

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()

    def next_line(self, timeout_s: float, skip_prefix: str | None = None) -> str:
        """The next non-empty line printed (skipping lines that start with ``skip_prefix``)."""
        deadline = time.monotonic() + timeout_s
        for _ in range(1_000):
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line and not (skip_prefix and line.startswith(skip_prefix)):
                return line
        raise AssertionError(f"wscat printed nothing within {timeout_s} s; {self.describe()}")

    def wait_open(self, timeout_s: float) -> str:
        """Say something that is not JSON until ``$default`` answers; the id it reports."""
        deadline = time.monotonic() + timeout_s
        for _ in range(100):
            if time.monotonic() >= deadline:
                break
            assert self.process.poll() is None, self.describe()
            self.send("hello, who am I?")
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            match = ID_IN_REPLY.search(line)
            assert line.startswith(DEFAULT_HINT), line
            assert match is not None, line
            return match.group(1)
        raise AssertionError(f"wscat got no $default reply in {timeout_s} s; {self.describe()}")

    def printed(self) -> list[str]:
        found: list[str] = []
        for _ in range(1_000):
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line:
                found.append(line)
        return found

    def quit(self) -> int:
        """Close stdin (wscat then closes the WebSocket and exits); kill if it lingers."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise AssertionError("wscat did not exit within 10 s of its stdin closing") from None
        finally:
            self._reader.join(timeout=5)

    def describe(self) -> str:
        code = self.process.poll()
        stderr = ""
        if code is not None and self.process.stderr is not None:
            stderr = self.process.stderr.read().decode("utf-8", "replace")[-500:]
        return f"exit status {code}, stderr {stderr!r}"


@pytest.fixture(scope="module", params=["baseline", "optimized"])
def walkthrough_stage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStage]:
    variant: str = request.param
    log_dir: Path = tmp_path_factory.mktemp(f"wscat-{variant}")
    with running_stage(StageConfig(variant=variant), log_dir) as stage:
        yield stage


def test_tutorial_walkthrough_with_wscat(walkthrough_stage: LocalStage) -> None:
    assert WSCAT.exists(), (
        f"{WSCAT} is missing: run `make test` (or `npm install`) to install wscat from package.json"
    )
    stage = walkthrough_stage
    assert table_ids(stage) == set()
    sender, listener = Wscat(stage.ws_url), Wscat(stage.ws_url)
    try:
        ids = {sender.wait_open(timeout_s=15), listener.wait_open(timeout_s=15)}
        assert len(ids) == 2
        assert table_ids(stage) == ids

        sender.send('{"action":"sendmessage","message":"hello"}')
        try:
            line = listener.next_line(timeout_s=10, skip_prefix=DEFAULT_HINT)
        except AssertionError as missing:
            raise AssertionError(f"{missing}; stage counters: {stage.stats()}") from None
        assert line == "hello"

        time.sleep(0.3)  # time enough for a copy to the sender, were one sent
        assert sender.process.poll() is None, sender.describe()
        assert "hello" not in sender.printed()
        assert len(table_ids(stage)) == 2
    finally:
        codes = [sender.quit(), listener.quit()]
    assert codes == [0, 0]
    wait_for(lambda: table_ids(stage) == set(), 10, "both connections to leave the table")


def test_wscat_over_wss_trusting_the_stages_ca(default_stage: LocalStage) -> None:
    """The API's TLS port, as AWS serves wss://, with wscat trusting only the stage's CA."""
    ca_file = default_stage.endpoints.ca_file
    assert ca_file is not None
    secure = Wscat(default_stage.endpoints.wss_url, "--ca", str(ca_file))
    plain = Wscat(default_stage.ws_url)
    try:
        secure.wait_open(timeout_s=15)
        plain.wait_open(timeout_s=15)
        plain.send('{"action":"sendmessage","message":"to the TLS client"}')
        assert secure.next_line(timeout_s=10, skip_prefix=DEFAULT_HINT) == "to the TLS client"
    finally:
        codes = [secure.quit(), plain.quit()]
    assert codes == [0, 0]
    untrusting = Wscat(default_stage.endpoints.wss_url)
    assert untrusting.process.wait(timeout=15) != 0  # it gives up on its own
    assert untrusting.quit() != 0
    assert untrusting.process.stderr is not None
    assert "certificate" in untrusting.process.stderr.read().decode("utf-8", "replace")
