"""``python -m loadtest.stage [flags]``: run a stage, announce it with one JSON line."""

from __future__ import annotations

import argparse

from loadtest.stage.config import add_stage_arguments, config_from_args
from loadtest.stage.server import print_ready_line, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.stage")
    add_stage_arguments(parser)
    run_stage(config_from_args(parser.parse_args()), print_ready_line)


if __name__ == "__main__":
    main()
