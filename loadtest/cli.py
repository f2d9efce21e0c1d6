"""``fanbench``: one command, subcommands for each job.

Errors a user can cause (bad flags, missing run directories, unreachable
targets) end with a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from loadtest.stage.config import LOOPBACK, add_stage_arguments, config_from_args

EXIT_USAGE = 2
EXIT_FAILED = 1


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def _stage(args: argparse.Namespace) -> int:
    from loadtest.stage.server import run_stage

    config = config_from_args(args)
    if config.host != LOOPBACK and not args.allow_remote:
        raise UserError(f"refusing to bind {config.host}: pass --allow-remote to expose the stage")

    def announce(info: dict[str, object]) -> None:
        scope = "only" if config.host == LOOPBACK else "(reachable from other hosts)"
        print(
            f"fanbench local stage ({info['variant']} sendmessage), bound to {config.host} {scope}"
        )
        print(f"  WebSocket URL:    {info['ws_url']}")
        print(f"  @connections URL: {info['connections_url']}")
        print(f"  DynamoDB:         {info['dynamodb_endpoint']} (table {info['table_name']})")
        print(f"  logs:             {info['log_dir']}")
        print("Ctrl-C stops it.", flush=True)

    run_stage(config, announce)
    return 0


def _run(args: argparse.Namespace) -> int:
    from loadtest.run import RunError, run_command

    try:
        return run_command(args)
    except RunError as error:
        raise UserError(str(error)) from None


def _trials(args: argparse.Namespace) -> int:
    from loadtest.run import RunError
    from loadtest.trials import trials_command

    try:
        return trials_command(args)
    except RunError as error:
        raise UserError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanbench",
        description="Fan-out latency and message loss for serverless WebSocket chat.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stage = commands.add_parser(
        "stage", help="run the local stage (API Gateway + Lambda + DynamoDB)"
    )
    add_stage_arguments(stage)
    stage.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    stage.set_defaults(func=_stage)

    run = commands.add_parser("run", help="run a swarm on the local stage (or --target) and report")
    from loadtest.run import add_run_arguments

    add_run_arguments(run)
    run.set_defaults(func=_run)

    trials = commands.add_parser(
        "trials",
        help="K interleaved runs of two local variants (A B A B ...) and their comparison",
        description="Takes every option of `fanbench run`; --run-dir is the folder of all trials.",
    )
    from loadtest.trials import add_trials_arguments

    add_run_arguments(trials)
    add_trials_arguments(trials)
    trials.set_defaults(func=_trials)

    from reports.commands import register

    register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except UserError as error:
        print(f"fanbench: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as error:
        print(f"fanbench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"fanbench: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
