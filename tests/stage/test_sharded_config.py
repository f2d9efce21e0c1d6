"""The stage's settings for the sharded variant and its asynchronous retries (pure)."""

from __future__ import annotations

import argparse

import pytest

from fanbench_common.variants import VARIANTS
from loadtest.stage.config import (
    StageConfig,
    add_stage_arguments,
    config_from_args,
    config_to_argv,
)


def test_sharded_is_a_variant_and_an_unknown_one_is_named_in_the_error() -> None:
    assert "sharded" in VARIANTS
    assert StageConfig(variant="sharded").variant == "sharded"
    choices = "baseline, sequential, optimized, sharded or tutorial"
    with pytest.raises(ValueError, match=f"variant must be {choices}"):
        StageConfig(variant="shardd")


def test_async_retry_delay_defaults_to_awss_minute_and_survives_the_command_line() -> None:
    assert StageConfig().async_retry_delay_s == 60.0
    config = StageConfig(variant="sharded", async_retry_delay_s=0.25)
    parser = argparse.ArgumentParser()
    add_stage_arguments(parser)
    argv = config_to_argv(config)
    assert argv[argv.index("--async-retry-delay") :][:2] == ["--async-retry-delay", "0.25"]
    assert config_from_args(parser.parse_args(argv)) == config


def test_a_negative_retry_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="async_retry_delay_s"):
        StageConfig(async_retry_delay_s=-1)
