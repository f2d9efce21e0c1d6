"""The web UI's fan-out tab in headless Chromium, during a real swarm against a real stage.

Locust runs with its web UI (``--autostart``); Chromium loads the UI on the
fan-out tab twice, a few seconds apart: the tab renders its table with the
saturation line, and its numbers move while the test runs. The tab's CSV and
the ``extended_stats`` in ``/stats/requests`` are read too.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanbench import LOCUSTFILE
from fanbench.locust_ledger import COLUMNS, CSV_PATH, TAB
from loadtest.stage.config import StageConfig
from loadtest.stage.dynamodb import free_port
from loadtest.stage.launcher import LocalStage, wait_until
from tests.repo import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
SWARM_S = 30
FUNCTION_TIMEOUT_S = 30.0
"""Long enough for both looks; Locust is terminated as soon as the test has them."""


@pytest.fixture
def web_ui(tmp_path: Path) -> Iterator[str]:
    """A running swarm's web UI address."""
    port = free_port("127.0.0.1")
    # A long function timeout: a cold start on a busy test machine is slow, not a failure.
    config = StageConfig(function_timeout_s=FUNCTION_TIMEOUT_S)
    with LocalStage(config, log_dir=tmp_path / "stage") as stage:
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", stage.ws_url,
            "--web-host", "127.0.0.1", "--web-port", str(port), "--autostart",
            "-u", "8", "-r", "50", "-t", f"{SWARM_S}s", "--loglevel", "WARNING",
            "--run-dir", str(tmp_path / "run"), "--send-interval", "0.5", "--warmup", "0.5",
            "--drain", "1",
        ]  # fmt: skip
        with (tmp_path / "locust.log").open("w") as log:
            locust = subprocess.Popen(
                command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "MPLBACKEND": "Agg"},
            )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            assert wait_until(lambda: _answers(url), 30), (tmp_path / "locust.log").read_text()
            yield url
        finally:
            locust.terminate()  # Locust drains and writes its run directory, then exits
            try:
                locust.wait(timeout=30)
            except subprocess.TimeoutExpired:
                locust.kill()
                locust.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def chromium_dom(url: str, profile: Path) -> str:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).stdout


def table(dom: str) -> list[list[str]]:
    """The page's table as rows of cell texts (header first)."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", dom, flags=re.DOTALL)
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
         for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.DOTALL)]
        for row in rows
    ]  # fmt: skip


def look(url: str, profile: Path) -> list[list[str]]:
    """The fan-out tab once it shows a whole-test row with some deliveries."""
    deadline = time.monotonic() + 30
    rows: list[list[str]] = []
    for attempt in range(6):
        rows = table(chromium_dom(f"{url}/?tab={TAB}", profile / str(attempt)))
        if len(rows) > 2 and rows[1][2].isdigit() and int(rows[1][2]) > 0:
            return rows
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    raise AssertionError(f"the fan-out tab showed no deliveries: {rows}")


def test_the_fanout_tab_renders_and_moves(web_ui: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.fail("chromium is not installed: run `make chromium`")
    first = look(web_ui, tmp_path / "first")
    assert first[0] == [title for _, title in COLUMNS]
    assert first[1][0] == "so far"
    assert first[1][-1].startswith("saturation: ")
    assert all(row[0].isdigit() for row in first[2:])  # one row per second, newest first
    time.sleep(3)
    second = look(web_ui, tmp_path / "second")
    delivered = [int(rows[1][2]) for rows in (first, second)]
    assert delivered[1] > delivered[0], (first[:3], second[:3])
    assert int(second[2][0]) > int(first[2][0])  # a newer second on top

    with urllib.request.urlopen(f"{web_ui}/stats/requests", timeout=10) as answer:
        (extended,) = json.load(answer)["extended_stats"]
    assert extended["key"] == TAB
    assert extended["data"][0]["second"] == "so far"
    with urllib.request.urlopen(f"{web_ui}{CSV_PATH}", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    assert lines[0].split(",")[:3] == ["Second", "Deliveries expected", "Delivered"]
    assert len(lines) >= 3
