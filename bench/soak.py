"""``python -m bench.soak --minutes M``: a bounded soak of the local stage and the generator.

One fault-free ``fanbench run`` of M minutes (default 10; at most 120) on the local
stage. Every few seconds it samples the resident memory (RSS) of the stage's whole
process tree (gateway and @connections, Lambda environments, the DynamoDB
emulator) and of the Locust process, with the run's progress. It passes when

* memory stays flat: over the sending window (after a settling-in period), the
  median of the last third of the samples is within ``--max-growth`` (10 %) of the
  median of the first third, for the stage and for the generator; and
* the run lost no delivery (the suite's own loss accounting).

The generator keeps, by design, every record the analysis needs: about 36 bytes per
message sent and 32 per delivery, in numpy columns. Those grow with the run whatever
happens, so the generator is judged on its memory net of them (both figures are
printed). Not part of the test suite: it takes minutes. Exit status 0 when it passes,
1 when it does not, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import REPO_ROOT
from bench.record import machine, versions
from fanbench_common.scenario import load_scenario
from fanbench_common.variants import VARIANT_NAMES

MAX_MINUTES = 120.0
SEND_ROW_BYTES = 8 * 4 + 4
"""sends: client, seq, intended_ns, sent_ns (int64) and bytes (int32)."""
DELIVERY_ROW_BYTES = 8 * 4
"""deliveries: client, sender, seq, received_ns (int64)."""
SCENARIO = load_scenario("soak")
"""The shipped scenario the soak runs; its duration, users and interval are the flags'."""
WARMUP_S = float(SCENARIO.knobs["warmup"])
EXTRA_TIME_S = 180.0
"""Start-up, drain and collection on top of the sending time, before the soak gives up."""
MIN_WINDOW_SAMPLES = 6
MIB = 2**20


@dataclass(frozen=True)
class Sample:
    t_s: float
    """Seconds since the soak started."""
    elapsed_s: float
    """The run's own clock (Locust's test time), -1 before it starts."""
    stage_rss: int
    emulator_rss: int
    """The DynamoDB emulator's share of ``stage_rss``."""
    stage_processes: int
    locust_rss: int
    sent: int
    delivered: int

    @property
    def records_bytes(self) -> int:
        return self.sent * SEND_ROW_BYTES + self.delivered * DELIVERY_ROW_BYTES


@dataclass(frozen=True)
class Growth:
    first_mib: float
    last_mib: float

    @property
    def ratio(self) -> float:
        return self.last_mib / self.first_mib if self.first_mib > 0 else float("nan")

    @property
    def growth(self) -> float:
        return self.ratio - 1


def _rss(process: psutil.Process) -> int:
    with contextlib.suppress(psutil.Error):
        return int(process.memory_info().rss)
    return 0


def _tree(root: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [root, *root.children(recursive=True)]
    return []


def _find(children: list[psutil.Process], marker: str) -> psutil.Process | None:
    for child in children:
        with contextlib.suppress(psutil.Error):
            if marker in child.cmdline():
                return child
    return None


def _is_emulator(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "moto.server" in process.cmdline()
    return False


def take_sample(run: psutil.Process, progress_file: Path, started: float) -> Sample:
    children = _tree(run)[1:]
    stage = _find(children, "loadtest.stage")
    locust = _find(children, "locust")
    stage_tree = _tree(stage) if stage is not None else []
    progress: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        progress = json.loads(progress_file.read_text())
    return Sample(
        t_s=time.monotonic() - started,
        elapsed_s=float(progress.get("elapsed_s", -1.0)),
        stage_rss=sum(_rss(p) for p in stage_tree),
        emulator_rss=sum(_rss(p) for p in stage_tree if _is_emulator(p)),
        stage_processes=len(stage_tree),
        locust_rss=_rss(locust) if locust is not None else 0,
        sent=int(progress.get("sent", 0)),
        delivered=int(progress.get("delivered", 0)),
    )


def window(samples: Sequence[Sample], duration_s: float, settle_in_s: float) -> list[Sample]:
    """Samples taken while the swarm sent, after settling in (start-up is not a leak)."""
    return [
        s
        for s in samples
        if settle_in_s <= s.elapsed_s <= duration_s and s.stage_rss > 0 and s.locust_rss > 0
    ]


def growth(values: Sequence[float]) -> Growth:
    """Median of the last third of ``values`` against the median of the first third."""
    third = max(1, len(values) // 3)
    return Growth(
        first_mib=statistics.median(values[:third]) / MIB,
        last_mib=statistics.median(values[-third:]) / MIB,
    )


def growth_count(values: Sequence[int]) -> tuple[float, float]:
    third = max(1, len(values) // 3)
    return statistics.median(values[:third]), statistics.median(values[-third:])


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT the run's group (its stage stops cleanly), SIGKILL what is left."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def soak(args: argparse.Namespace) -> dict[str, Any]:
    duration_s = args.minutes * 60
    run_dir: Path = args.run_dir or Path(tempfile.mkdtemp(prefix="fanbench-soak-")) / "run"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    interval_s = args.sample_interval or min(5.0, max(1.0, duration_s / 40))
    settle_in_s = (
        args.settle_in if args.settle_in is not None else WARMUP_S + max(10.0, 0.1 * duration_s)
    )
    command = [
        sys.executable, "-m", "fanbench", "run", "--scenario", "soak",
        "--run-dir", str(run_dir), "--duration", f"{duration_s:g}",
        "--users", str(args.users), "--send-interval", f"{args.send_interval:g}",
        "--variant", args.variant, "--no-report", "--quiet",
    ]  # fmt: skip
    started = time.monotonic()
    with (
        (run_dir.parent / "soak-run.stdout").open("wb") as out,
        (run_dir.parent / "soak-run.stderr").open("wb") as err,
    ):
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True, env={**os.environ, "MPLBACKEND": "Agg"},
        )  # fmt: skip
    samples: list[Sample] = []
    deadline = started + duration_s + EXTRA_TIME_S
    try:
        run = psutil.Process(process.pid)
        while process.poll() is None and time.monotonic() < deadline:
            samples.append(take_sample(run, run_dir / "progress.json", started))
            if not args.quiet:
                s = samples[-1]
                print(
                    f"  {s.t_s:7.1f} s  stage {s.stage_rss / MIB:7.1f} MiB"
                    f" ({s.stage_processes} processes)  locust {s.locust_rss / MIB:6.1f} MiB"
                    f"  sent {s.sent:>7}  delivered {s.delivered:>9}",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(interval_s)
    finally:
        stop_group(process)
    return judge(args, run_dir, samples, duration_s, settle_in_s, interval_s, process.returncode)


def judge(
    args: argparse.Namespace,
    run_dir: Path,
    samples: list[Sample],
    duration_s: float,
    settle_in_s: float,
    interval_s: float,
    returncode: int,
) -> dict[str, Any]:
    problems: list[str] = []
    counts: dict[str, Any] = {}
    if returncode != 0:
        problems.append(f"fanbench run exited {returncode} (see {run_dir.parent}/soak-run.*)")
    else:
        from fanbench_common.rundir import read_run
        from reports.analysis import analyze

        account = analyze(read_run(run_dir)).counts
        counts = account.as_dict()  # the result's JSON
        if account.lost:
            problems.append(f"lost {account.lost} of {account.expected} deliveries")
        if not account.expected:
            problems.append("nothing was expected: the swarm did not chat")
    measured = window(samples, duration_s, settle_in_s)
    figures: dict[str, Any] = {"window_samples": len(measured)}
    if len(measured) < MIN_WINDOW_SAMPLES:
        problems.append(f"only {len(measured)} samples in the window: too short to judge")
    else:
        stage = growth([s.stage_rss for s in measured])
        emulator = growth([s.emulator_rss for s in measured])
        locust = growth([s.locust_rss for s in measured])
        locust_net = growth([s.locust_rss - s.records_bytes for s in measured])
        records_mib = (measured[-1].records_bytes - measured[0].records_bytes) / MIB
        figures.update(
            stage_first_mib=stage.first_mib, stage_last_mib=stage.last_mib,
            stage_growth=stage.growth,
            emulator_first_mib=emulator.first_mib, emulator_last_mib=emulator.last_mib,
            locust_first_mib=locust.first_mib, locust_last_mib=locust.last_mib,
            locust_growth=locust.growth, locust_net_growth=locust_net.growth,
            records_growth_mib=records_mib,
            stage_processes_first=growth_count([s.stage_processes for s in measured])[0],
            stage_processes_last=growth_count([s.stage_processes for s in measured])[1],
        )  # fmt: skip
        if stage.growth >= args.max_growth:
            problems.append(f"stage memory grew {100 * stage.growth:.1f} %")
        if locust_net.growth >= args.max_growth:
            problems.append(f"generator memory grew {100 * locust_net.growth:.1f} % net of records")
    return {
        "benchmark": "soak",
        "passed": not problems,
        "problems": problems,
        "parameters": {
            "minutes": args.minutes,
            "users": args.users,
            "send_interval_s": args.send_interval,
            "variant": args.variant,
            "sample_interval_s": interval_s,
            "settle_in_s": settle_in_s,
            "max_growth": args.max_growth,
        },
        "figures": figures,
        "counts": {key: counts.get(key) for key in ("messages", "expected", "delivered", "lost")},
        "run_dir": str(run_dir),
        "samples": [asdict(s) for s in samples],
        "machine": machine(),
        "versions": versions(),
    }


def render(result: dict[str, Any]) -> str:
    f, c, p = result["figures"], result["counts"], result["parameters"]
    mach = result["machine"]
    lines = [
        f"soak: {p['minutes']:g} min, {p['users']} users, one message each every "
        f"{p['send_interval_s']:g} s, {p['variant']}; RSS sampled every "
        f"{p['sample_interval_s']:g} s, judged after {p['settle_in_s']:g} s",
        f"  machine: {mach['cpu_model']}, {mach['cores']} cores, load {mach['load_average']}",
        "  versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
        f"  deliveries: {c['delivered']} of {c['expected']} expected, lost {c['lost']}",
    ]
    if "stage_growth" in f:
        lines += [
            f"  stage RSS (whole tree): {f['stage_first_mib']:.1f} → {f['stage_last_mib']:.1f} MiB"
            f" ({100 * f['stage_growth']:+.1f} %; last/first third medians;"
            f" {f['stage_processes_first']:g} → {f['stage_processes_last']:g} processes)",
            f"    of which the DynamoDB emulator: {f['emulator_first_mib']:.1f} →"
            f" {f['emulator_last_mib']:.1f} MiB",
            f"  generator RSS: {f['locust_first_mib']:.1f} → {f['locust_last_mib']:.1f} MiB"
            f" ({100 * f['locust_growth']:+.1f} %; {100 * f['locust_net_growth']:+.1f} % net of"
            f" {f['records_growth_mib']:.2f} MiB of new records)",
        ]
    lines += [f"  window: {f['window_samples']} samples"]
    lines += [f"  FAIL: {problem}" for problem in result["problems"]]
    lines += ["  PASS: memory flat, nothing lost" if result["passed"] else ""]
    return "\n".join(line for line in lines if line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="sending time (default 10)")
    parser.add_argument("--users", type=int, default=SCENARIO.knobs["users"])
    parser.add_argument("--send-interval", type=float, default=SCENARIO.knobs["send_interval"])
    parser.add_argument("--variant", choices=VARIANT_NAMES, default="optimized")
    parser.add_argument("--sample-interval", type=float, default=0.0,
                        help="seconds between samples (default: duration/40, 1-5 s)")  # fmt: skip
    parser.add_argument("--settle-in", type=float,
                        help="seconds of the run left out of the judgement (default: warm-up"
                             " plus 10 %% of the duration, at least 10 s)")  # fmt: skip
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--run-dir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--quiet", action="store_true", help="no per-sample lines")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be within (0, {MAX_MINUTES:g}]")
    if args.users < 1 or args.send_interval <= 0 or args.sample_interval < 0:
        parser.error("--users, --send-interval and --sample-interval must be positive")
    if args.settle_in is not None and args.settle_in < 0:
        parser.error("--settle-in cannot be negative")
    result = soak(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result), flush=True)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
