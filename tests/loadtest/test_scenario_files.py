"""Scenario files: parsing, refusals that name the key, and flags overriding the file."""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from fanbench.cli import parse_arguments
from fanbench.run import locust_command, stage_config_for
from fanbench_common.errors import ScenarioError
from fanbench_common.scenario import (
    KNOBS,
    SHIPPED_DIR,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)
from loadtest.stage.config import (
    StageConfig,
    add_stage_arguments,
    config_from_args,
    config_to_argv,
)


def _stage(args: argparse.Namespace) -> StageConfig:
    return stage_config_for(args, Path("run"))


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_shipped_examples_are_there() -> None:
    assert {"tutorial", "room-1000", "faults-transient", "faults-lambda-timeout"} <= set(
        shipped_scenarios()
    )


@pytest.mark.parametrize("name", shipped_scenarios())
def test_every_shipped_scenario_builds_a_run_command_line(name: str) -> None:
    args = parse_arguments(["run", "--scenario", name])
    scenario = load_scenario(name)
    for knob, value in scenario.knobs.items():
        assert getattr(args, knob) == value, knob
    for fault, value in scenario.faults.items():
        assert getattr(_stage(args).faults, fault) == value, fault
    assert scenario.description


@pytest.mark.parametrize("name", shipped_scenarios())
def test_every_shipped_scenario_reaches_the_stage_process_intact(name: str) -> None:
    """The launcher hands the stage its settings as flags: they must parse back the same."""
    config = replace(_stage(parse_arguments(["run", "--scenario", name])), log_dir=None)
    stage_parser = argparse.ArgumentParser()
    add_stage_arguments(stage_parser)
    rebuilt = config_from_args(stage_parser.parse_args(config_to_argv(config)))
    assert rebuilt == config


def test_a_file_sets_knobs_faults_and_stage_settings(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'users = 7\nsend_interval = 3\nvariant = "baseline"\n'
        "[faults]\npost_latency_ms = 20\n[stage]\nconcurrency = 3\n"
        '[lambda_env]\nAWS_MAX_ATTEMPTS = 1\n[parameters]\nPostConcurrency = "4"\n',
    )
    args = parse_arguments(["run", "--scenario", path])
    config = _stage(args)
    assert (args.users, args.send_interval, args.variant) == (7, 3.0, "baseline")
    assert isinstance(args.send_interval, float)
    assert (config.faults.post_latency_ms, config.concurrency) == (20.0, 3)
    assert config.lambda_environment == {"AWS_MAX_ATTEMPTS": "1"}
    assert config.parameters == {"PostConcurrency": "4"}
    assert args.scenario_file.source == path


def test_flags_override_the_file_wherever_they_stand(tmp_path: Path) -> None:
    path = _write(tmp_path, "users = 7\nduration = 30\n[faults]\ndrop_rate = 0.1\n")
    before = parse_arguments(["run", "--users", "3", "--scenario", path, "--drop-rate", "0.2"])
    after = parse_arguments(["run", "--scenario", path, "--users", "3"])
    assert (before.users, before.duration, _stage(before).faults.drop_rate) == (
        3,
        30.0,
        0.2,
    )
    assert (after.users, after.duration, _stage(after).faults.drop_rate) == (3, 30.0, 0.1)


def test_knobs_the_file_leaves_out_keep_their_defaults(tmp_path: Path) -> None:
    args = parse_arguments(["run", "--scenario", _write(tmp_path, "users = 4\n")])
    # The run's own defaults: the stage picks the variant, its timeouts the drain limit.
    assert (args.variant, args.drain_limit) == (None, None)
    defaults = {k.name: k.default for k in KNOBS if k.name not in ("variant", "drain_limit")}
    for name, default in defaults.items():
        if name != "users":
            assert getattr(args, name) == default, name


def test_the_locust_command_carries_every_locust_knob(tmp_path: Path) -> None:
    args = parse_arguments(["run", "--scenario", _write(tmp_path, "room_size = 5\nwarmup = 1\n")])
    command = locust_command(args, "ws://127.0.0.1:1/local", tmp_path, "optimized", 42.0)
    flags = dict(itertools.pairwise(command))
    assert flags["--drain-limit"] == "42.0"
    assert (flags["--room-size"], flags["--warmup"], flags["--variant"]) == (
        "5",
        "1.0",
        "optimized",
    )
    for knob in KNOBS:
        assert (knob.flag in command) == knob.locust, knob.name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("usres = 3\n", "unknown key 'usres'"),
        ("users = 'many'\n", "users must be int, not str"),
        ("users = 2.5\n", "users must be int, not float"),
        ("users = true\n", "users must be int, not bool"),
        ("users = 0\n", "--users must be positive"),
        ("room_size = -1\n", "--room-size cannot be negative"),
        ("send_interval = inf\n", "--send-interval must be a finite number"),
        ("users = [\n", "not valid TOML"),
        ("faults = 3\n", r"\[faults\] must be a table"),
        ("[faults]\npost_latency_ms = 'slow'\n", r"\[faults\] post_latency_ms must be a number"),
        ("description = 4\n", "description must be a string"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError, match=message) as caught:
        load_scenario(path)
    assert path in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[faults]\npost_latenc_ms = 3\n", "unknown fault 'post_latenc_ms'"),
        ("[stage]\nconcurency = 3\n", "unknown stage setting 'concurency'"),
        ("[stage]\nusers = 3\n", "unknown stage setting 'users'"),
        ("[stage]\ntoken = 'x'\n", "token is a secret"),
        ("[stage]\nauth_token = 'x'\n", "auth_token is a secret"),
    ],
)
def test_unknown_stage_and_fault_names_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_arguments(["run", "--scenario", _write(tmp_path, text)])


def test_a_missing_scenario_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match=r"no scenario file 'nope'.*tutorial"):
        load_scenario("nope")


def test_a_shipped_name_and_its_path_load_the_same() -> None:
    assert (
        load_scenario("tutorial").knobs == load_scenario(str(SHIPPED_DIR / "tutorial.toml")).knobs
    )


def test_parse_names_its_source_in_errors() -> None:
    with pytest.raises(ScenarioError, match=r"^inline: unknown key"):
        parse_scenario("colour = 'blue'\n", "inline")
