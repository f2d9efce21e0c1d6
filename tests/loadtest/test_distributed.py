"""A swarm across machines: the master's and workers' command lines, and the container example.

The container example (deploy/containers) cannot be run here (no container
runtime), so these tests check that its commands are fanbench's own: they parse,
they pass fanbench's checks, the worker's is the one the end-to-end test
(tests/reliability/test_swarm_across_hosts.py) runs, and the image installs the
wheel the way the README says.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import msgpack
import pytest

from fanbench import LOCUSTFILE
from fanbench.cli import build_parser, main
from fanbench.run import locust_command, validate
from fanbench_common.scenario import Scenario
from loadtest import handoff
from loadtest.distributed import (
    DEFAULT_MASTER_PORT,
    HOSTNAME_ENV,
    hostname,
    validate_master,
    worker_command,
)
from tests.containers import COMPOSE_MASTER_SERVICE, DOCKERFILE, compose, worker_argv


def _run_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_a_worker_runs_fanbenchs_locustfile_against_the_named_master() -> None:
    args = build_parser().parse_args(
        ["worker", "--master-host", "10.0.0.5", "--master-port", "6000"]
    )
    command = worker_command(args, LOCUSTFILE)
    assert command[command.index("-f") + 1] == str(LOCUSTFILE)
    assert LOCUSTFILE.is_file()
    assert "--worker" in command
    assert command[command.index("--master-host") + 1] == "10.0.0.5"
    assert command[command.index("--master-port") + 1] == "6000"
    assert "--processes" not in command
    several = build_parser().parse_args(["worker", "--master-host", "h", "--processes", "4"])
    assert worker_command(several, LOCUSTFILE)[-2:] == ["--processes", "4"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--master-port", "0"], "--master-port must be a port number"),
        (["--processes", "0"], "--processes must be at least 1"),
    ],
)
def test_a_bad_worker_command_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--master-host", "h", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_the_master_waits_for_workers_elsewhere_instead_of_forking_them(tmp_path: Path) -> None:
    args = _run_args("--expect-workers", "3", "--master-bind-port", "6001")
    validate(args)
    command = locust_command(args, "ws://x", tmp_path, "optimized", 10.0)
    assert "--processes" not in command
    assert "--master" in command
    assert command[command.index("--expect-workers") + 1] == "3"
    assert command[command.index("--master-bind-host") + 1] == "127.0.0.1"
    assert command[command.index("--master-bind-port") + 1] == "6001"


def test_local_workers_listen_on_loopback_on_a_port_of_their_own(tmp_path: Path) -> None:
    args = _run_args("--workers", "2")
    command = locust_command(args, "ws://x", tmp_path, "optimized", 10.0)
    assert command[command.index("--processes") + 1] == "2"
    assert command[command.index("--master-bind-host") + 1] == "127.0.0.1"
    port = command[command.index("--master-bind-port") + 1]
    assert command[command.index("--master-port") + 1] == port


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--expect-workers", "2", "--workers", "2"], "choose one"),
        (["--expect-workers", "-1"], "cannot be negative"),
        (["--expect-workers", "2", "--master-bind-host", "0.0.0.0"], "--allow-remote"),
        (["--master-bind-port", "70000"], "must be a port number"),
    ],
)
def test_master_settings_that_cannot_work_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_master(_run_args(*argv))


def test_a_remote_master_needs_allow_remote(tmp_path: Path) -> None:
    args = _run_args("--expect-workers", "2", "--master-bind-host", "0.0.0.0", "--allow-remote")
    validate_master(args)  # accepted: the refusal above is only for want of --allow-remote
    command = locust_command(args, "ws://x", tmp_path, "optimized", 10.0)
    assert command[command.index("--master-bind-host") + 1] == "0.0.0.0"


def test_the_host_name_can_be_given() -> None:
    assert hostname({HOSTNAME_ENV: "generator-7"}) == "generator-7"
    assert hostname({}) != ""


# -- the container example -------------------------------------------------------------


def _dockerfile_instruction(name: str) -> list[str]:
    (line,) = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith(f"{name} ")]
    value: list[str] = json.loads(line.removeprefix(f"{name} "))
    return value


def test_the_image_runs_fanbench_and_by_default_the_worker_the_test_runs() -> None:
    assert _dockerfile_instruction("ENTRYPOINT") == ["fanbench"]
    cmd = _dockerfile_instruction("CMD")
    assert cmd == worker_argv(COMPOSE_MASTER_SERVICE, DEFAULT_MASTER_PORT)
    assert cmd == compose()["services"]["worker"]["command"]
    build_parser().parse_args(cmd)


def test_the_image_installs_the_wheel_where_the_instructions_build_it() -> None:
    text = DOCKERFILE.read_text()
    assert "pip wheel --no-deps -w deploy/containers/dist ." in text
    assert re.search(r"^COPY dist/fanbench-\*\.whl ", text, re.MULTILINE)
    assert re.search(r"^RUN pip install .*/tmp/fanbench-\*\.whl", text, re.MULTILINE)


def test_the_compose_master_is_a_valid_fanbench_run_the_workers_can_reach() -> None:
    services = compose()["services"]
    assert set(services) == {COMPOSE_MASTER_SERVICE, "worker"}
    substituted = [
        re.sub(r"\$\{(\w+)(:-([^}]*))?\}", lambda m: m.group(3) or "wss://x.example/prod", part)
        for part in services[COMPOSE_MASTER_SERVICE]["command"]
    ]
    args = build_parser().parse_args(substituted)
    assert args.command == "run"
    validate(args)
    worker = services["worker"]["command"]
    assert args.expect_workers > 0
    assert str(args.master_bind_port) == worker[worker.index("--master-port") + 1]
    assert worker[worker.index("--master-host") + 1] == COMPOSE_MASTER_SERVICE
    # The token reaches the master through the environment, never a command line.
    assert "--token" not in substituted
    assert "FANBENCH_TOKEN" in services[COMPOSE_MASTER_SERVICE]["environment"]


# -- the scenario hand-off (loadtest/handoff.py) -------------------------------------------


MASTERS = Scenario(message_bytes=200, send_interval_s=0.5, room_size=8, token="fbtok-secret")


def test_a_worker_applies_every_field_the_master_sends_the_token_included() -> None:
    message = msgpack.unpackb(msgpack.packb(handoff.handoff(MASTERS, "ws://stage/local")))
    assert handoff.applied(message) == (MASTERS, "ws://stage/local")


def test_what_a_worker_reports_it_ran_never_holds_the_token() -> None:
    report = handoff.ran(MASTERS, "ws://stage/local")
    assert "fbtok-secret" not in json.dumps(report)
    assert report["scenario"]["message_bytes"] == 200


def test_workers_that_ran_the_masters_scenario_are_no_mismatch() -> None:
    expected = handoff.ran(MASTERS, "ws://t")
    assert handoff.mismatches(expected, {0: [expected], 1: [expected]}, {0, 1}) == {}
    # A worker without sends (fewer users than workers) need not have reported.
    assert handoff.mismatches(expected, {0: [expected]}, {0}) == {}


def test_a_worker_that_ran_anything_else_is_named_with_what_differed() -> None:
    expected = handoff.ran(MASTERS, "ws://t")
    default = handoff.ran(Scenario(token="fbtok-secret"), "ws://t")
    found = handoff.mismatches(expected, {0: [expected], 1: [default, expected]}, {0, 1})
    assert set(found) == {1}
    assert "message_bytes=64 (master: 200)" in found[1]
    elsewhere = handoff.ran(MASTERS, "ws://other")
    assert "target='ws://other'" in handoff.mismatches(expected, {0: [elsewhere]}, {0})[0]


def test_a_worker_that_sent_without_any_scenario_report_is_a_mismatch() -> None:
    expected = handoff.ran(MASTERS, "ws://t")
    assert handoff.mismatches(expected, {0: [expected]}, {0, 1}) == {1: handoff.NO_SCENARIO}
