"""What the reporting subcommands of ``fanbench`` do: report, compare, check, export,
fetch-metrics, plan.

Each takes typed values (``fanbench/cli.py`` parses the command line and registers every
subcommand), prints its result and returns the exit status. They read run directories only.
Errors a user can cause raise ``ValueError`` subclasses (``RunDirError`` among them), which the
CLI prints as one line. Heavy modules are imported inside each function, so that parsing a
command line loads neither matplotlib nor pyarrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reports.gate import Thresholds

EXPORT_FORMATS = ("csv", "parquet", "hlog")
"""``reports.export.FORMATS``, named here so that parsing the command line loads no pyarrow."""


def report(run_dir: Path, price_overrides: Sequence[str]) -> int:
    from reports.prices import Prices
    from reports.render import write_report

    prices = Prices.with_overrides(list(price_overrides))
    print(f"report: {write_report(run_dir, prices)}")
    return 0


def compare(run_dirs: Sequence[Path], out: Path | None, force: bool,
            versus: Sequence[Path] | None) -> int:  # fmt: skip
    from reports.compare import write_comparison

    written = write_comparison(
        list(run_dirs), out, force=force, versus=None if versus is None else list(versus)
    )
    print(f"comparison: {written}")
    return 0


def check(run_dir: Path, thresholds: Thresholds, allow_invalid: bool) -> int:
    """1 when the run misses a threshold, each miss on a FAIL line; else 0 and one PASS line."""
    from fanbench_common.rundir import read_run
    from reports.analysis import analyze
    from reports.gate import failures

    if thresholds.empty():
        raise ValueError("fanbench check needs at least one --max-* threshold")
    problems = failures(analyze(read_run(run_dir)), thresholds, allow_invalid)
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print(f"PASS: {run_dir} meets every threshold")
    return 1 if problems else 0


def export(run_dir: Path, formats: Sequence[str], out: Path | None) -> int:
    from fanbench_common.rundir import read_run
    from reports.export import export_run

    distinct = list(dict.fromkeys(formats))
    if out is not None and len(distinct) > 1:
        raise ValueError("--out names one file: give one --format with it")
    run = read_run(run_dir)
    for fmt in distinct:
        print(f"export: {export_run(run, fmt, out)}")
    return 0


def fetch_metrics(run_dir: Path, stack: str, region: str | None, profile: str | None,
                  endpoint_url: str | None) -> int:  # fmt: skip
    from reports.cloudwatch_fetch import fetch

    written = fetch(run_dir, stack, region=region, profile=profile, endpoint_url=endpoint_url)
    print(f"cloudwatch: {written}")
    print(f"fanbench report {run_dir} shows them beside the client-side figures")
    return 0


def plan(
    platform_name: str,
    variant_names: Sequence[str],
    sizes: Sequence[int],
    *,
    post_latency_ms: float | None = None,
    cpu_ms_per_post: float | None = None,
    memory_mb: int | None = None,
    concurrency: int | None = None,
    shard_size: int | None = None,
    price_overrides: Sequence[str] = (),
    as_json: bool = False,
) -> int:
    """Predictions for the platform, with each platform figure given (not ``None``) in place of
    its modelled value."""
    import json
    from dataclasses import replace

    from reports.capacity import PLATFORMS, VARIANTS, plan_markdown
    from reports.capacity import plan as predict_plan
    from reports.prices import Prices

    platform = PLATFORMS[platform_name]
    given: dict[str, Any] = {
        name: value
        for name, value in (
            ("post_latency_ms", post_latency_ms), ("cpu_ms_per_post", cpu_ms_per_post),
            ("memory_mb", memory_mb), ("concurrency", concurrency),
        )
        if value is not None
    }  # fmt: skip
    if any(value <= 0 for value in given.values()):
        raise ValueError("--post-latency-ms, --cpu-ms-per-post, --memory-mb and --concurrency "
                         "must be positive")  # fmt: skip
    sources = {**platform.sources, **{name: "given on the command line" for name in given}}
    platform = replace(platform, **given, sources=sources)
    # A figure given on the command line is every variant's, the tutorial's own included.
    variants = [VARIANTS[name] for name in variant_names]
    if cpu_ms_per_post is not None:
        variants = [replace(v, cpu_ms_per_post=None) for v in variants]
    if memory_mb is not None:
        variants = [replace(v, memory_mb=None) for v in variants]
    if shard_size is not None:
        if shard_size < 1:
            raise ValueError("--shard-size must be at least 1")
        variants = [replace(v, shard_size=shard_size) if v.shard_size else v for v in variants]
    predictions = predict_plan(
        platform, variants, tuple(sizes), Prices.with_overrides(list(price_overrides))
    )
    if as_json:
        print(json.dumps([p.as_dict() for p in predictions], indent=2))
    else:
        print(plan_markdown(platform, predictions), end="")
    return 0
