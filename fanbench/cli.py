"""``fanbench``: one command, subcommands for each job.

Errors a user can cause (bad flags, missing run directories, unreachable
targets) end with a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fanbench_common.errors import FanbenchBug, FanbenchError
from loadtest.stage.config import LOOPBACK, add_stage_arguments, config_from_args

EXIT_USAGE = 2
EXIT_FAILED = 1


class UserError(FanbenchError):
    """A problem the user can fix; printed as one line."""


def _stage(args: argparse.Namespace) -> int:
    from loadtest.stage.endpoints import StageEndpoints
    from loadtest.stage.server import run_stage

    config = config_from_args(args)
    if config.host != LOOPBACK and not args.allow_remote:
        raise UserError(f"refusing to bind {config.host}: pass --allow-remote to expose the stage")

    def announce(endpoints: StageEndpoints) -> None:
        scope = "only" if config.host == LOOPBACK else "(reachable from other hosts)"
        api = f"{config.template}" if config.template else f"{endpoints.variant} sendmessage"
        print(f"fanbench local stage ({api}), bound to {config.host} {scope}")
        print(f"  WebSocket URL:    {endpoints.ws_url}")
        print(f"  @connections URL: {endpoints.connections_url}")
        print(
            f"  over TLS:         {endpoints.wss_url} and "
            f"{endpoints.https_callback_url}/@connections"
        )
        print(f"  TLS CA:           {endpoints.ca_file} (trusted by the stage's functions)")
        print(
            f"  DynamoDB:         {endpoints.dynamodb_endpoint} ({endpoints.dynamodb_emulator}, "
            f"table {endpoints.table_name})"
        )
        print(f"  logs:             {endpoints.log_dir}")
        print("Ctrl-C stops it.", flush=True)

    run_stage(config, announce)
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.variants or args.targets:
        from fanbench.sidebyside import side_by_side_command

        return side_by_side_command(args)
    from fanbench.run import run_command

    return run_command(args)


def _trials(args: argparse.Namespace) -> int:
    from fanbench.trials import trials_command

    return trials_command(args)


def _worker(args: argparse.Namespace) -> int:
    import os

    from fanbench import LOCUSTFILE
    from loadtest.distributed import worker_command

    command = worker_command(args, LOCUSTFILE)
    # Locust replaces this process: signals reach it directly, as with `locust --worker`.
    os.execv(command[0], command)


def _locustfile(args: argparse.Namespace) -> int:
    from fanbench import LOCUSTFILE

    print(LOCUSTFILE)
    return 0


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
    from fanbench.run import add_run_arguments

    add_run_arguments(run)
    from fanbench.sidebyside import add_side_by_side_arguments

    add_side_by_side_arguments(run)
    run.set_defaults(func=_run, scenario_parser=run)

    trials = commands.add_parser(
        "trials",
        help="K interleaved runs of two variants (A B A B ...), on the local stage or two "
        "deployed stacks (--targets), and their comparison",
        description="Takes every option of `fanbench run` but --target and --variant; "
        "--run-dir is the folder of all trials.",
    )
    from fanbench.trials import add_trials_arguments

    add_run_arguments(trials)
    for action in trials._actions:
        if action.dest in ("target", "variant"):  # refused with a reason (validate_trials)
            action.help = argparse.SUPPRESS
    add_trials_arguments(trials)
    trials.set_defaults(func=_trials, scenario_parser=trials)

    worker = commands.add_parser(
        "worker",
        help="a Locust worker for a swarm across machines (the master: fanbench run "
        "--expect-workers N)",
        description="Takes the scenario, target and token from the master when the test starts.",
    )
    from loadtest.distributed import add_worker_arguments

    add_worker_arguments(worker)
    worker.set_defaults(func=_worker)

    locustfile = commands.add_parser(
        "locustfile",
        help="print the path of fanbench's locustfile, for plain Locust: "
        'locust -f "$(fanbench locustfile)" --host ws://...',
    )
    locustfile.set_defaults(func=_locustfile)

    from reports.commands import register, register_plan

    register(commands)
    register_plan(commands)
    return parser


def _with_scenario_file(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse again with the scenario file's values as defaults, so that flags override it."""
    from fanbench.run import scenario_defaults
    from fanbench_common.scenario import load_scenario

    run_parser: argparse.ArgumentParser = args.scenario_parser
    scenario = load_scenario(args.scenario)
    run_parser.set_defaults(**scenario_defaults(scenario, run_parser.parse_args([])))
    reparsed = parser.parse_args(argv)
    reparsed.scenario_file = scenario
    return reparsed


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, with a ``--scenario`` file's values under the flags given."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "scenario", None):
        args = _with_scenario_file(parser, args, argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_arguments(argv)
        code: int = args.func(args)
        return code
    except FanbenchBug:
        raise
    except ValueError as error:
        print(f"fanbench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except FanbenchError as error:
        print(f"fanbench: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(f"fanbench: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
