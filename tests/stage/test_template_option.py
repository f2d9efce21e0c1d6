"""``--template`` on ``fanbench stage`` and ``fanbench run``, and in a scenario's [stage]."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanbench.cli import EXIT_USAGE, main, parse_arguments
from fanbench.run import stage_config_for
from loadtest.stage.config import StageConfig, config_from_args, config_to_argv


def test_stage_and_run_take_a_template() -> None:
    stage = config_from_args(parse_arguments(["stage", "--template", "api/template.yaml"]))
    run = stage_config_for(parse_arguments(["run", "--template", "t.yaml"]), Path("r"))
    assert stage.template == Path("api/template.yaml")
    assert run.template == Path("t.yaml")
    assert StageConfig().template is None  # fanbench's own template by default


def test_the_template_travels_to_the_stage_subprocess() -> None:
    argv = config_to_argv(StageConfig(template=Path("/x/template.yaml")))
    assert argv[argv.index("--template") + 1] == "/x/template.yaml"
    assert "--template" not in config_to_argv(StageConfig())


def test_a_scenario_names_a_template_relative_to_itself(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text('[stage]\ntemplate = "api/template.yaml"\n', encoding="utf-8")
    config = stage_config_for(parse_arguments(["run", "--scenario", str(scenario)]), Path("r"))
    assert config.template == tmp_path / "api" / "template.yaml"
    flagged = parse_arguments(["run", "--scenario", str(scenario), "--template", "mine.yaml"])
    assert stage_config_for(flagged, Path("r")).template == Path("mine.yaml")


def test_a_refused_template_leaves_no_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text("Resources: {}\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["run", "--template", str(template), "--run-dir", str(run_dir)]) == EXIT_USAGE
    assert not run_dir.exists()
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(
        "template.yaml: the template defines no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET"
    )
