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

    out = write_comparison(list(args.run_dirs), args.out, force=args.force)
    print(f"comparison: {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from reports.analysis import analyze
    from reports.gate import Thresholds, failures
    from reports.rundir import read_run

    thresholds = Thresholds(
        max_p50_ms=args.max_p50_ms,
        max_p99_ms=args.max_p99_ms,
        max_loss_rate=args.max_loss_rate,
        max_duplicates=args.max_duplicates,
        max_error_frames=args.max_error_frames,
    )
    if thresholds.empty():
        raise ValueError("fanbench check needs at least one --max-* threshold")
    problems = failures(analyze(read_run(args.run_dir)), thresholds)
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print(f"PASS: {args.run_dir} meets every threshold")
    return 1 if problems else 0


def _export(args: argparse.Namespace) -> int:
    from reports.export import export_run
    from reports.rundir import read_run

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

    compare = commands.add_parser("compare", help="compare runs (e.g. baseline vs optimized)")
    compare.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", type=Path, help="output folder (default: runs/compare-<time>)")
    compare.add_argument("--force", action="store_true", help="compare even if scenarios differ")
    compare.set_defaults(func=_compare)

    check = commands.add_parser(
        "check", help="exit non-zero when a run misses a threshold (for CI)"
    )
    check.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    check.add_argument("--max-p50-ms", type=float)
    check.add_argument("--max-p99-ms", type=float)
    check.add_argument("--max-loss-rate", type=float)
    check.add_argument("--max-duplicates", type=int)
    check.add_argument("--max-error-frames", type=int)
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
