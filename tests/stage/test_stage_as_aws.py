"""The stage as AWS is where it decides cost and loss: TLS callbacks, Lambda's freeze, quotas.

* Functions reach @connections over https by default (``https://{domainName}/{stage}``,
  as on AWS, where every callback pays TLS); plain HTTP only with ``callbacks="http"``.
* Environments are frozen between invocations (SIGSTOP after the response, SIGCONT at
  the next), so the tutorial's chat with an un-awaited fan-out loses its posts while the
  function sits idle, as on AWS; with ``freeze=False`` the same code delivers them all,
  which is how emulators that keep the process running hide the bug.
* The account's quotas are on by default: 10,000 callbacks/s (burst 5,000) and 500 new
  connections/s; a lower connect rate refuses the handshake past it with 429.
* ``variant="tutorial"`` runs the AWS tutorial's own Node.js app with its template.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection

from fanbench_common.limits import (
    ACCOUNT_THROTTLE_BURST,
    ACCOUNT_THROTTLE_RPS,
    NEW_CONNECTIONS_PER_S,
)
from fanbench_common.resources import bundled_app, tutorial_app, unawaited_app
from fanbench_common.rundir import read_run
from loadtest.stage.config import (
    StageConfig,
    add_stage_arguments,
    config_from_args,
    config_to_argv,
    default_template,
    resolve_template,
)
from loadtest.stage.launcher import LocalStage
from tests.repo import REPO_ROOT
from tests.stage.support import gateway_stat, open_ws, recv_text, stage_in, table_ids, wait_for

RECEIVERS = 20
IDLE_S = 2.0
"""How long the un-awaited fan-out's function sits idle before receivers are counted."""


def _chat(message: str) -> str:
    return json.dumps({"action": "sendmessage", "message": message})


def _parse(argv: list[str]) -> StageConfig:
    parser = argparse.ArgumentParser()
    add_stage_arguments(parser)
    return config_from_args(parser.parse_args(argv))


# -- settings (pure) --------------------------------------------------------------------


def test_defaults_are_awss() -> None:
    config = StageConfig()
    assert config.callbacks == "https"
    assert config.freeze is True
    assert (config.throttle_rps, config.throttle_burst) == (
        ACCOUNT_THROTTLE_RPS,
        ACCOUNT_THROTTLE_BURST,
    )
    assert config.connect_rate == NEW_CONNECTIONS_PER_S
    # Handlers build https://{domainName}/{stage} themselves, as on AWS.
    assert config.template_parameters("http://127.0.0.1:1/local")["CallbackUrl"] == ""
    plain = StageConfig(callbacks="http")
    assert plain.template_parameters("http://127.0.0.1:1/local")["CallbackUrl"] == (
        "http://127.0.0.1:1/local"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--no-freeze"],
        ["--callbacks", "http"],
        ["--connect-rate", "0", "--throttle-rps", "0"],
        ["--connect-rate", "2", "--connect-burst", "3", "--variant", "tutorial"],
    ],
)
def test_flags_change_or_lift_the_defaults_and_travel_to_a_subprocess(argv: list[str]) -> None:
    config = _parse(argv)
    assert config != StageConfig()
    assert _parse(config_to_argv(config)) == config


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="callbacks"):
        StageConfig(callbacks="ftp")
    with pytest.raises(ValueError, match="0 lifts"):
        StageConfig(connect_rate=-1)


def test_the_tutorial_variant_runs_the_tutorials_own_template() -> None:
    assert default_template(StageConfig()) == bundled_app().template
    assert default_template(StageConfig(variant="tutorial")) == tutorial_app().template
    template = resolve_template(StageConfig(variant="tutorial"))
    assert {spec.runtime for spec in template.functions.values()} == {"nodejs20.x"}
    assert template.routes["sendmessage"].logical_id == "SendMessageHandler"


# -- TLS callbacks ------------------------------------------------------------------------


def _broadcast(stage: LocalStage, receivers: int, message: str) -> None:
    with ExitStack() as stack:
        sender = stack.enter_context(open_ws(stage.ws_url))
        others = [stack.enter_context(open_ws(stage.ws_url)) for _ in range(receivers)]
        sender.send(_chat(message))
        for ws in others:
            assert recv_text(ws, 10) == message


def test_handlers_post_over_https_by_default(default_stage: LocalStage) -> None:
    https, http = (gateway_stat(default_stage, f"api_calls_{s}") for s in ("https", "http"))
    _broadcast(default_stage, 3, "over tls")
    assert gateway_stat(default_stage, "api_calls_https") >= https + 3
    assert gateway_stat(default_stage, "api_calls_http") == http


@pytest.fixture(scope="module")
def plain_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    yield from stage_in(StageConfig(callbacks="http"), tmp_path_factory, "plain-callbacks")


def test_plain_http_callbacks_only_when_asked(plain_stage: LocalStage) -> None:
    _broadcast(plain_stage, 3, "over plain http")
    assert gateway_stat(plain_stage, "api_calls_http") >= 3
    assert gateway_stat(plain_stage, "api_calls_https") == 0


# -- Lambda's freeze -----------------------------------------------------------------------


def _workers(stage: LocalStage) -> list[psutil.Process]:
    """The stage's execution environments: forked by its forkserver, or ``node`` workers."""
    assert stage.pid is not None
    found = []
    for process in psutil.Process(stage.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            parent = process.parent()
            forked = parent is not None and "forkserver" in " ".join(parent.cmdline())
            if forked or "node_worker.js" in " ".join(process.cmdline()):
                found.append(process)
    return found


def _all_frozen(stage: LocalStage, at_least: int) -> bool:
    workers = _workers(stage)
    with contextlib.suppress(psutil.Error):
        # A replaced environment (killed at its timeout) may linger as a zombie: not a worker.
        states = [s for s in (w.status() for w in workers) if s != psutil.STATUS_ZOMBIE]
        return len(states) >= at_least and set(states) == {psutil.STATUS_STOPPED}
    return False


def test_environments_are_frozen_between_invocations(default_stage: LocalStage) -> None:
    _broadcast(default_stage, 2, "then freeze")
    # connect, disconnect, default and sendmessage: at least one environment each, all stopped
    wait_for(lambda: _all_frozen(default_stage, 4), 10, "every environment frozen")
    _broadcast(default_stage, 2, "thawed for the next invocation")


def _unawaited(freeze: bool) -> StageConfig:
    return StageConfig(
        template=unawaited_app().template, freeze=freeze, table_name="unawaited-connections"
    )


@pytest.fixture(scope="module", params=[True, False], ids=["frozen", "kept-running"])
def unawaited_stage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStage]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    yield from stage_in(_unawaited(request.param), tmp_path_factory, "unawaited")


def _arrived(ws: ClientConnection, message: str) -> bool:
    try:
        return ws.recv(timeout=0.01) == message
    except TimeoutError:
        return False


def test_an_unawaited_fan_out_loses_its_posts_while_the_function_is_frozen(
    unawaited_stage: LocalStage,
) -> None:
    frozen = unawaited_stage.config.freeze
    with ExitStack() as stack:
        sender = stack.enter_context(open_ws(unawaited_stage.ws_url))
        receivers = [stack.enter_context(open_ws(unawaited_stage.ws_url)) for _ in range(RECEIVERS)]
        wait_for(lambda: len(table_ids(unawaited_stage)) == RECEIVERS + 1, 15, "$connect puts")
        sender.send(_chat("lost in the freeze"))
        deadline = time.monotonic() + 10
        while unawaited_stage.stats()["lambda"]["invocations"].get("SendMessageHandler", 0) < 1:
            assert time.monotonic() < deadline, "sendmessage never ran"
            time.sleep(0.05)
        time.sleep(IDLE_S)  # the function sits idle: nothing invokes it again
        reached = sum(_arrived(ws, "lost in the freeze") for ws in receivers)
    if frozen:
        assert reached <= RECEIVERS // 2, f"{reached} of {RECEIVERS} reached while frozen"
    else:
        assert reached == RECEIVERS  # how an emulator that keeps the process running hides it


# -- account quotas ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def connect_rate_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(connect_rate=0.2, connect_burst=2)
    yield from stage_in(config, tmp_path_factory, "connect-rate")


def test_connects_past_the_account_rate_get_429(connect_rate_stage: LocalStage) -> None:
    with open_ws(connect_rate_stage.ws_url), open_ws(connect_rate_stage.ws_url):
        with pytest.raises(InvalidStatus) as refused:
            open_ws(connect_rate_stage.ws_url).close()
        assert refused.value.response.status_code == 429
    assert gateway_stat(connect_rate_stage, "connect_throttled") == 1


# -- fanbench run --variant tutorial ----------------------------------------------------------


def test_fanbench_run_drives_the_tutorials_own_app(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "fanbench", "run", "--variant", "tutorial", "--users", "4",
        "--spawn-rate", "20", "--duration", "4", "--send-interval", "0.5", "--warmup", "0.5",
        "--drain", "2", "--settle", "0.5", "--no-report", "--quiet", "--run-dir", str(run_dir),
        # Warm environments for every client: a Node.js cold start is a fresh `node`, seconds
        # on a loaded 2-core machine, which would eat the short run.
        "--provisioned", "4",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "MPLBACKEND": "Agg"}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run = read_run(run_dir)
    assert run.meta.get("variant") == "tutorial"
    assert len(run.deliveries["client"]) >= 3, "the tutorial's broadcasts reached nobody"
