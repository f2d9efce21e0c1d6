"""The reporting subcommands of ``fanbench``: report, compare, check, export, fetch-metrics.

They read run directories only. Errors a user can cause raise ``ValueError``
subclasses (``RunDirError`` among them), which the CLI prints as one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXPORT_FORMATS = ("csv", "parquet", "hlog")
"""``reports.export.FORMATS``, named here so that parsing the command line loads no pyarrow."""


def _report(args: argparse.Namespace) -> int:
    from reports.prices import Prices
    from reports.render import write_report

    prices = Prices.with_overrides(args.price)
    print(f"report: {write_report(args.run_dir, prices)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from reports.compare import write_comparison

    out = write_comparison(list(args.run_dirs), args.out, force=args.force, versus=args.versus)
    print(f"comparison: {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from fanbench_common.rundir import read_run
    from reports.analysis import analyze
    from reports.gate import Thresholds, failures

    thresholds = Thresholds(
        max_p50_ms=args.max_p50_ms,
        max_p99_ms=args.max_p99_ms,
        max_loss_rate=args.max_loss_rate,
        max_duplicates=args.max_duplicates,
        max_error_frames=args.max_error_frames,
    )
    if thresholds.empty():
        raise ValueError("fanbench check needs at least one --max-* threshold")
    problems = failures(analyze(read_run(args.run_dir)), thresholds, args.allow_invalid)
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print(f"PASS: {args.run_dir} meets every threshold")
    return 1 if problems else 0


def _export(args: argparse.Namespace) -> int:
    from fanbench_common.rundir import read_run
    from reports.export import export_run

    formats = list(dict.fromkeys(args.format))
    if args.out is not None and len(formats) > 1:
        raise ValueError("--out names one file: give one --format with it")
    run = read_run(args.run_dir)
    for fmt in formats:
        print(f"export: {export_run(run, fmt, args.out)}")
    return 0


def _fetch_metrics(args: argparse.Namespace) -> int:
    from reports.cloudwatch_fetch import fetch

    written = fetch(
        args.run_dir, args.stack, region=args.region, profile=args.profile,
        endpoint_url=args.endpoint_url,
    )  # fmt: skip
    print(f"cloudwatch: {written}")
    print(f"fanbench report {args.run_dir} shows them beside the client-side figures")
    return 0


def register(commands: Any) -> None:
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
    export.add_argument("--format", action="append", choices=EXPORT_FORMATS, required=True,
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


def _plan(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from reports.capacity import PLATFORMS, VARIANTS, plan, plan_markdown
    from reports.prices import Prices

    platform = PLATFORMS[args.platform]
    overrides = {
        name: getattr(args, name)
        for name in ("post_latency_ms", "cpu_ms_per_post", "memory_mb", "concurrency")
        if getattr(args, name) is not None
    }
    if any(value <= 0 for value in overrides.values()):
        raise ValueError("--post-latency-ms, --cpu-ms-per-post, --memory-mb and --concurrency "
                         "must be positive")  # fmt: skip
    sources = {**platform.sources, **{name: "given on the command line" for name in overrides}}
    platform = replace(platform, **overrides, sources=sources)
    variants = [VARIANTS[name] for name in args.variants]
    if args.shard_size is not None:
        if args.shard_size < 1:
            raise ValueError("--shard-size must be at least 1")
        variants = [replace(v, shard_size=args.shard_size) if v.shard_size else v for v in variants]
    predictions = plan(platform, variants, tuple(args.sizes), Prices.with_overrides(args.price))
    if args.json:
        print(json.dumps([p.as_dict() for p in predictions], indent=2))
    else:
        print(plan_markdown(platform, predictions), end="")
    return 0


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of sizes: {text!r}") from None
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError("room sizes must be at least 2")
    return sizes


def register_plan(commands: Any) -> None:
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
