"""``python -m loadtest.stage [flags]``: run a stage, announce it with one JSON line."""

from __future__ import annotations

import argparse
import sys

from fanbench_common.errors import FanbenchError
from loadtest.stage.config import add_stage_arguments, config_from_args
from loadtest.stage.server import print_ready_line, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.stage")
    add_stage_arguments(parser)
    config = config_from_args(parser.parse_args())
    try:
        run_stage(config, print_ready_line)
    except (OSError, RuntimeError, FanbenchError) as error:
        # One line, no traceback: the launcher reports that the stage did not start.
        print(f"fanbench stage: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
