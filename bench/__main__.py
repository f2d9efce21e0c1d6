"""``python -m bench [NAME ...] [--size smoke|default|full]``: run benchmarks, record results.

With no NAME every benchmark runs, at the default size (under 10 minutes on a
2-core machine). Each result is merged by name into
``bench/results/<YYYY-MM-DD>.json``; ``<date>.md`` is rewritten from it and the
new tables are printed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.record import RESULTS_DIR, SIZES, BenchResult, Size, render_results, write_results

BENCHMARKS = (
    "handler_fanout",
    "variant_faults",
    "post_ceiling",
    "cost_curve",
    "generator_capacity",
    "stage_headroom",
    "capacity_check",
    "sharded_fanout",
    "at_limits",
    "side_by_side",
    "stage_as_aws",
)
Runner = Callable[[Size, Path], BenchResult]


def runner(name: str) -> Runner:
    """The benchmark's ``run``; modules load lazily (one imports nothing the others need)."""
    module = importlib.import_module(f"bench.{name}")
    run: Runner = module.run
    return run


def run_benchmarks(
    names: Sequence[str], size: Size, results_dir: Path, work_dir: Path
) -> list[BenchResult]:
    results: list[BenchResult] = []
    for name in names:
        print(f"== {name} ({size}) ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        result = runner(name)(size, work_dir / name)
        results.append(result)
        json_path, _ = write_results([result], results_dir)
        print(
            f"== {name}: {time.perf_counter() - began:.0f} s, merged into {json_path}",
            file=sys.stderr,
            flush=True,
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="stage logs (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    with tempfile.TemporaryDirectory(prefix="fanbench-bench-") as scratch:
        work_dir = args.work_dir or Path(scratch)
        results = run_benchmarks(names, args.size, args.results_dir, work_dir)
    print(render_results(results))
    print(f"results: {args.results_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
