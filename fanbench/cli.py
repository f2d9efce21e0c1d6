"""``fanbench``: one command, subcommands for each job; this module alone builds its parser.

Every subcommand is registered here: the load generator's (stage, worker, locustfile), the run
driver's (run, trials) and the reports' (report, compare, check, export, fetch-metrics, plan),
whose work is typed functions in ``reports/commands.py``. Errors a user can cause (bad flags,
missing run directories, unreachable targets) end with a one-line message and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fanbench_common.errors import FanbenchBug, FanbenchError
from loadtest.stage.config import LOOPBACK, add_stage_arguments, config_from_args
from reports import commands as reporting
from reports.gate import Thresholds

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


def _report(args: argparse.Namespace) -> int:
    return reporting.report(args.run_dir, args.price)


def _compare(args: argparse.Namespace) -> int:
    return reporting.compare(args.run_dirs, args.out, args.force, args.versus)


def _check(args: argparse.Namespace) -> int:
    thresholds = Thresholds(
        max_p50_ms=args.max_p50_ms,
        max_p99_ms=args.max_p99_ms,
        max_loss_rate=args.max_loss_rate,
        max_duplicates=args.max_duplicates,
        max_error_frames=args.max_error_frames,
    )
    return reporting.check(args.run_dir, thresholds, args.allow_invalid)


def _export(args: argparse.Namespace) -> int:
    return reporting.export(args.run_dir, args.format, args.out)


def _fetch_metrics(args: argparse.Namespace) -> int:
    return reporting.fetch_metrics(
        args.run_dir, args.stack, args.region, args.profile, args.endpoint_url
    )


def _plan(args: argparse.Namespace) -> int:
    return reporting.plan(
        args.platform, args.variants, args.sizes,
        post_latency_ms=args.post_latency_ms, cpu_ms_per_post=args.cpu_ms_per_post,
        memory_mb=args.memory_mb, concurrency=args.concurrency, shard_size=args.shard_size,
        price_overrides=args.price, as_json=args.json,
    )  # fmt: skip


def _add_report_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report", help="write RUN_DIR/report/ (HTML, Markdown, JSON, charts)"
    )
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--price", action="append", default=[], metavar="NAME=USD",
                        help="override a price, e.g. lambda_per_million_requests=0.2")  # fmt: skip
    report.set_defaults(func=_report)

    compare = commands.add_parser(
        "compare",
        help="compare runs (e.g. baseline vs optimized), or repeated runs: A1 A2 A3 --vs B1 B2 B3",
    )
    compare.add_argument(
        "run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
        help="runs; the first is the reference (with --vs: the reference side)",
    )  # fmt: skip
    compare.add_argument(
        "--vs", dest="versus", type=Path, nargs="+", metavar="RUN_DIR",
        help="the other side's runs: several runs a side give a verdict that allows for "
        "run-to-run variation",
    )  # fmt: skip
    compare.add_argument("--out", type=Path, help="output folder (default: runs/compare-<time>)")
    compare.add_argument("--force", action="store_true", help="compare even if scenarios differ")
    compare.set_defaults(func=_compare)

    check = commands.add_parser(
        "check", help="exit non-zero when a run misses a threshold (for CI)"
    )
    check.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    check.add_argument("--max-p50-ms", type=float, help="fail if fan-out p50 exceeds this")
    check.add_argument("--max-p99-ms", type=float, help="fail if fan-out p99 exceeds this")
    check.add_argument("--max-loss-rate", type=float,
                       help="fail if lost/expected exceeds this fraction, e.g. 0.001")  # fmt: skip
    check.add_argument("--max-duplicates", type=int, help="fail past this many duplicates")
    check.add_argument("--max-error-frames", type=int, help="fail past this many error frames")
    check.add_argument(
        "--allow-invalid", action="store_true",
        help="check a run whose validity banner lists problems (default: fail it)",
    )  # fmt: skip
    check.set_defaults(func=_check)

    export = commands.add_parser(
        "export", help="write a run as CSV/Parquet delivery rows or an HdrHistogram log"
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    export.add_argument("--format", action="append", choices=reporting.EXPORT_FORMATS,
                        required=True,
                        help="csv/parquet: one row per expected delivery; hlog: fan-out latency"
                        " per second as an HdrHistogram interval log (repeatable)")  # fmt: skip
    export.add_argument("--out", type=Path, help="output file, for one --format"
                        " (default: in RUN_DIR/export/)")  # fmt: skip
    export.set_defaults(func=_export)

    metrics = commands.add_parser(
        "fetch-metrics",
        help="after a run against AWS: CloudWatch's figures for its window into RUN_DIR/server/",
    )
    metrics.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    metrics.add_argument("--stack", required=True, metavar="NAME",
                         help="the CloudFormation stack the run targeted")  # fmt: skip
    metrics.add_argument("--region", help="default: boto3's, else the target URL's")
    metrics.add_argument("--profile", help="a named profile from the AWS config files")
    metrics.add_argument("--endpoint-url", help="an AWS-compatible endpoint (LocalStack, moto)")
    metrics.set_defaults(func=_fetch_metrics)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of sizes: {text!r}") from None
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError("room sizes must be at least 2")
    return sizes


def _add_plan_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from reports.capacity import PLATFORMS, ROOM_SIZES, VARIANTS

    plan = commands.add_parser(
        "plan", help="predict time to last delivery and cost by room size and variant"
    )
    plan.add_argument("--platform", choices=sorted(PLATFORMS), default="aws",
                      help="whose CPU and limits to model (default: aws)")  # fmt: skip
    modelled = [str(variant) for variant in VARIANTS]
    plan.add_argument("--variants", nargs="+", choices=modelled, default=modelled,
                      help="handler variants to predict (default: all)")  # fmt: skip
    plan.add_argument("--sizes", type=_sizes, default=list(ROOM_SIZES),
                      help="comma-separated room sizes (default: 100 to 100,000)")  # fmt: skip
    plan.add_argument("--post-latency-ms", type=float, help="PostToConnection round trip")
    plan.add_argument("--cpu-ms-per-post", type=float, help="handler CPU per post on one core")
    plan.add_argument("--memory-mb", type=int, help="Lambda memory (sets the vCPU share)")
    plan.add_argument("--concurrency", type=int, help="Lambda concurrency available")
    plan.add_argument("--shard-size", type=int, help="recipients per fan-out invocation (sharded)")
    plan.add_argument("--price", action="append", default=[], metavar="NAME=USD",
                      help="override a price, e.g. lambda_per_gb_second=0.0000166667")  # fmt: skip
    plan.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    plan.set_defaults(func=_plan)


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

    _add_report_commands(commands)
    _add_plan_command(commands)
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
