"""Stopping a stage leaves nothing behind: no Lambda worker, no moto server, no stage process."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import psutil
import pytest

from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from tests.stage.support import open_ws, recv_text


def _gone(pid: int, created: float) -> bool:
    """The process no longer exists (a zombie awaiting its reaper counts as gone)."""
    try:
        process = psutil.Process(pid)
        if process.create_time() != created:
            return True  # the pid was reused by someone else
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_leaves_no_process_of_the_stage(tmp_path_factory: pytest.TempPathFactory) -> None:
    stage = LocalStage(StageConfig(), log_dir=tmp_path_factory.mktemp("shutdown"))
    stage.start()
    try:
        with open_ws(stage.ws_url) as sender, open_ws(stage.ws_url) as receiver:
            sender.send(json.dumps({"action": "sendmessage", "message": "last words"}))
            assert recv_text(receiver) == "last words"
            process = stage._process
            assert process is not None
            root = psutil.Process(process.pid)
            children = root.children(recursive=True)
            # the test means something only if there were workers and an emulator to leave behind
            commands = [" ".join(child.cmdline()) for child in children]
            assert any("dynalite/cli.js" in command for command in commands), commands
            assert len(children) >= 3, commands  # the emulator and at least two environments
            recorded = [(child.pid, child.create_time()) for child in children]
            described = dict(zip([c.pid for c in children], commands, strict=True))
            recorded.append((root.pid, root.create_time()))
    finally:
        stage.stop()
    left = [described.get(pid, "the stage") for pid, created in recorded if not _gone(pid, created)]
    assert left == [], f"processes of the stage still running after stop(): {left}"
    # and nothing listens any more on the stage's ports
    for url in (stage.endpoints.ws_url, stage.endpoints.management_url):
        host, port = urlsplit(url).hostname, urlsplit(url).port
        assert host == "127.0.0.1"
        assert port is not None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=2).close()
