"""``fanbench run``: local stage (or a real target) + a Locust swarm + the run directory.

Locust runs in its own process (gevent's monkey-patching stays out of this
one); this process starts the stage, shows live progress from the master's
``progress.json``, and summarizes. The Locust master alone writes run.json, once; what this
process knows (the scenario file, the stage and where its statistics are) reaches it through
``loadtest/run_context.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fanbench import LOCUSTFILE
from fanbench_common.errors import FanbenchError, RunDirError, ScenarioError
from fanbench_common.redaction import SECRET_KEYS, redact_mapping
from fanbench_common.rundir import ErrorKind, Run, default_run_dir, read_run
from fanbench_common.scenario import (
    KNOBS,
    TOKEN_ENV,
    UNKNOWN_VARIANT,
    ScenarioFile,
    add_knob_arguments,
    check_knobs,
    connect_url,
)
from fanbench_common.variants import VARIANTS
from loadtest import run_context
from loadtest.distributed import (
    WORKERS_WAIT_S,
    add_master_arguments,
    master_options,
    validate_master,
)
from loadtest.stage.config import (
    LOOPBACK,
    StageConfig,
    add_stage_arguments,
    config_from_args,
    resolve_template,
)
from loadtest.stage.launcher import LocalStage, StageError
from reports import saturation
from reports.analysis import analyze
from reports.summary import Summary

EXTRA_LOCUST_TIME_S = 60
PREFLIGHT_TIMEOUT_S = 10.0
EXIT_INCOMPLETE = 1
"""``fanbench run``'s exit status when records are missing (a worker died): the figures are
not the whole run."""
EXIT_WRONG_SCENARIO = 1
"""... and when a worker's sends did not all come from the master's scenario
(``loadtest/handoff.py``): the figures measure something else than what was asked."""
LOCUST_LOG = Path("locust") / "output.log"
""""Locust's own output (its shutdown tracebacks can run to megabytes) goes here, not to the
terminal."""


class RunError(FanbenchError):
    """The run could not produce a run directory; the message says why."""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", metavar="FILE_OR_NAME",
        help="a scenario file (TOML) or a shipped scenario's name; flags override it",
    )  # fmt: skip
    parser.add_argument(
        "--target", help="a real stage's wss:// URL (default: start the local stage)"
    )
    # The stage's own flags include --variant, the one knob that both sides share; the
    # drain limit's default here depends on the stage's timeouts (see drain_limit_s).
    add_knob_arguments(parser, locust=False, exclude=frozenset({"variant", "drain_limit"}))
    parser.add_argument("--drain-limit", type=float,
                        help="wait for fan-outs to finish at most this many seconds after"
                        " sending stops (default: the integration timeout plus the longest"
                        " function timeout)")  # fmt: skip
    parser.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV, ""),
        help=f"?token= for $connect, also the local stage's (default: ${TOKEN_ENV}, which "
        "keeps it out of ps)",
    )  # fmt: skip
    parser.add_argument("--run-dir", type=Path, help="default: ./runs/<UTC timestamp>")
    parser.add_argument("--no-report", action="store_true", help="skip writing the report")
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host or --master-bind-host")  # fmt: skip
    add_master_arguments(parser)
    add_stage_arguments(parser, exclude=frozenset({"auth_token", "log_dir"}))
    # None marks "not given", which only --target treats differently (see run_variant).
    parser.set_defaults(variant=None)
    for action in parser._actions:
        if action.dest == "variant":
            action.help = (
                f"sendmessage handler: {', '.join(VARIANTS)} (default: optimized on the local "
                f"stage; against --target, {UNKNOWN_VARIANT!r} unless given)"
            )


def run_variant(target: str | None, variant: str | None) -> str:
    """The run's variant label: ``--variant`` when given, else the local stage's default,
    or ``unknown`` against a ``--target`` (never a guess that would mislabel a comparison)."""
    if variant:
        return variant
    return UNKNOWN_VARIANT if target else StageConfig().variant


def stage_config_for(args: argparse.Namespace, run_dir: Path) -> StageConfig:
    chosen = argparse.Namespace(**{**vars(args), "variant": args.variant or StageConfig().variant})
    return replace(config_from_args(chosen), auth_token=args.token, log_dir=run_dir / "stage")


def scenario_defaults(scenario: ScenarioFile, known: argparse.Namespace) -> dict[str, Any]:
    """The file's values as parser defaults (so flags override them), checked against ``known``.

    ``known`` is the namespace of an empty command line: every destination the
    run parser has, so a misspelt fault or stage setting is refused by name.
    """
    defaults: dict[str, Any] = dict(scenario.knobs)
    for name, value in scenario.faults.items():
        if not hasattr(known, f"faults__{name}"):
            raise ScenarioError(f"{scenario.source}: unknown fault {name!r}")
        defaults[f"faults__{name}"] = value
    for name, value in scenario.stage.items():
        if name in SECRET_KEYS:
            raise ScenarioError(
                f"{scenario.source}: {name} is a secret and has no place in a file; "
                f"set ${TOKEN_ENV} instead"
            )
        if name in KNOB_AND_RUN_ONLY or name.startswith("faults__") or not hasattr(known, name):
            raise ScenarioError(f"{scenario.source}: unknown stage setting {name!r}")
        # A template's path in a scenario file is relative to that file.
        relative_to_file = name == "template"
        defaults[name] = str(Path(scenario.source).parent / value) if relative_to_file else value
    defaults["lambda_env"] = [f"{name}={value}" for name, value in scenario.lambda_env.items()]
    defaults["param"] = [f"{name}={value}" for name, value in scenario.parameters.items()]
    return defaults


KNOB_AND_RUN_ONLY = frozenset(
    {knob.name for knob in KNOBS}
    | {"scenario", "target", "token", "run_dir", "no_report", "quiet"}
    | {"expect_workers", "master_bind_host", "master_bind_port"}
)
"""Settings that belong at a scenario file's top level (or nowhere), not in ``[stage]``."""


def validate(args: argparse.Namespace) -> None:
    check_knobs(vars(args))
    if args.target and urlsplit(args.target).scheme not in ("ws", "wss"):
        raise ValueError(f"--target must be a ws:// or wss:// URL, not {args.target!r}")
    if not args.target and args.host != LOOPBACK and not args.allow_remote:
        raise ValueError(f"refusing to bind {args.host}: pass --allow-remote to expose the stage")
    validate_master(args)


def drain_limit_s(args: argparse.Namespace, function_timeouts_s: list[float]) -> float:
    """How long after the last send a fan-out can still be running: an invocation may wait
    up to the integration timeout to start, then run up to its function timeout."""
    if args.drain_limit is not None:
        return float(args.drain_limit)
    integration_s = float(args.integration_timeout_s)
    longest_s = max(function_timeouts_s, default=integration_s)
    return max(float(args.drain), integration_s + longest_s)


def locust_command(
    args: argparse.Namespace, host: str, run_dir: Path, variant: str, drain_limit: float
) -> list[str]:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", host, "-u", str(args.users), "-r", str(args.spawn_rate),
        "-t", f"{int(args.duration)}s", "--stop-timeout", "10",
        "--csv", str(run_dir / "locust" / "locust"), "--only-summary", "--loglevel", "WARNING",
        "--run-dir", str(run_dir), "--variant", variant,
    ]  # fmt: skip
    for knob in KNOBS:
        if knob.locust and knob.name not in ("variant", "drain_limit"):
            command += [knob.flag, str(getattr(args, knob.name))]
    command += ["--drain-limit", str(drain_limit)]
    if args.workers:
        # Locust's master binds every interface on port 5557 by default: on a shared machine
        # two swarms would collide, and the workers here are on this host anyway.
        from loadtest.stage.dynamodb import free_port  # boto3's import, only when it is needed

        port = str(free_port(LOOPBACK))
        command += ["--processes", str(args.workers), "--master-bind-host", LOOPBACK,
                    "--master-bind-port", port, "--master-port", port]  # fmt: skip
    elif args.expect_workers:
        command += master_options(args)
    return command


def preflight(target: str, token: str) -> None:
    """Fail fast, in one line, when the target cannot be reached (rather than a swarm of errors)."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    url = connect_url(target, None, token)
    try:
        with connect(url, open_timeout=PREFLIGHT_TIMEOUT_S, close_timeout=1):
            pass
    except InvalidStatus as error:
        raise RunError(
            f"{target} refused the WebSocket handshake with HTTP {error.response.status_code}"
        ) from None
    except (OSError, TimeoutError, WebSocketException) as error:
        raise RunError(f"cannot connect to {target}: {type(error).__name__}: {error}") from None


def _progress_line(progress: dict[str, Any]) -> str:
    lost = progress.get("lost")
    return (
        f"\r  {progress['elapsed_s']:6.1f} s  users {progress['users']:>5}"
        f"  sent {progress['sent']:>7}"
        f"  delivered {progress['delivered']:>9}  lost {'-' if lost is None else lost:>6}"
    )


def _watch(process: subprocess.Popen[bytes], run_dir: Path, quiet: bool, limit_s: float) -> int:
    """Wait for Locust; on a terminal redraw one progress line, elsewhere print one every 10 s."""
    deadline = time.monotonic() + limit_s
    progress_file = run_dir / "progress.json"
    interactive = sys.stdout.isatty()
    last_printed = 0.0
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            raise RunError(f"Locust did not finish within {limit_s:.0f} s")
        time.sleep(0.5)
        due = interactive or time.monotonic() - last_printed >= 10
        if not quiet and due and progress_file.is_file():
            with contextlib.suppress(ValueError, OSError, KeyError):
                line = _progress_line(json.loads(progress_file.read_text()))
                print(
                    line if interactive else line.lstrip("\r"),
                    end="" if interactive else "\n",
                    flush=True,
                )
                last_printed = time.monotonic()
    if not quiet and interactive:
        print()
    return process.wait()


def execute(args: argparse.Namespace, ready: Callable[[], None] | None = None) -> Path:
    """Run the swarm; return the run directory.

    ``ready``, when given, is called once the stage is up and just before the swarm starts:
    two sides run side by side wait there for each other (``fanbench/sidebyside.py``).
    """
    validate(args)
    # Absolute before anything else: Locust must write where the user's shell means.
    run_dir: Path = (args.run_dir or default_run_dir()).resolve()
    if (run_dir / "run.json").exists():
        raise RunError(f"{run_dir} already holds a run; choose another --run-dir")
    # Everything that can refuse the run does so before the run directory exists.
    stage_config = stage_config_for(args, run_dir)
    if args.target:
        preflight(args.target, args.token)
    else:
        resolve_template(stage_config)  # a template the stage cannot run is refused here
    run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        stage: LocalStage | None = None
        if args.target:
            host, variant = args.target, run_variant(args.target, args.variant)
        else:
            stage = LocalStage(stage_config)
            try:
                stack.enter_context(stage)
            except StageError as error:
                raise RunError(str(error)) from None
            host, variant = stage.ws_url, stage_config.variant
        # A side of ``--variants`` is labelled with its settings (optimized:PostConcurrency=2).
        variant = getattr(args, "variant_label", None) or variant
        timeouts = (
            [float(f["timeout_s"]) for f in stage.stats()["functions"].values()]
            if stage is not None
            else []
        )
        drain_limit = drain_limit_s(args, timeouts)
        limit_s = args.duration + drain_limit + EXTRA_LOCUST_TIME_S + args.users / args.spawn_rate
        if args.expect_workers:
            limit_s += WORKERS_WAIT_S
            print(
                f"fanbench: waiting for {args.expect_workers} workers on "
                f"{args.master_bind_host}:{args.master_bind_port}"
                f" (fanbench worker --master-host HOST --master-port {args.master_bind_port})",
                flush=True,
            )
        print(f"fanbench: {args.users} users → {host} ({variant or 'unlabelled'})", flush=True)
        log_path = run_dir / LOCUST_LOG
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if ready is not None:
            ready()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                locust_command(args, host, run_dir, variant, drain_limit),
                env={
                    **os.environ,
                    TOKEN_ENV: args.token,
                    run_context.RUN_CONTEXT_ENV: _run_context(args, stage, stage_config),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            _watch(process, run_dir, args.quiet, limit_s)
        if not (run_dir / "run.json").is_file():
            print(_log_tail(log_path), file=sys.stderr)
            raise RunError(
                f"Locust ended without writing {run_dir / 'run.json'}; its output is in {log_path}"
            )
        tracebacks = log_path.read_bytes().count(b"Traceback (most recent call last)")
        if tracebacks:
            print(f"fanbench: Locust logged {tracebacks} tracebacks; see {log_path}", flush=True)
    return run_dir


def _run_context(args: argparse.Namespace, stage: LocalStage | None, config: StageConfig) -> str:
    """What the master adds to run.json (it alone writes it): scenario file and stage."""
    context: dict[str, Any] = {"stage": {"kind": "remote"}}
    scenario_file: ScenarioFile | None = getattr(args, "scenario_file", None)
    if scenario_file is not None:
        context["scenario_file"] = {
            "source": scenario_file.source,
            "description": scenario_file.description,
        }
    side = getattr(args, "side_by_side", None)
    if side:
        context["side_by_side"] = side
    if stage is not None:
        context["stage"] = {
            "kind": "local",
            "config": _stage_meta(config),
            "stats_url": stage.stats_url,
        }
    return run_context.encode(context)


def _log_tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return "\n".join(text[-lines:])


def _stage_meta(config: Any) -> dict[str, Any]:
    from dataclasses import asdict

    meta = redact_mapping(asdict(config))
    meta["log_dir"] = str(config.log_dir)
    return meta


def _connect_failures(summary: Summary, run: Run) -> str:
    count = summary.errors_of(ErrorKind.CONNECT_FAILED)
    if not count:
        return "connect failures 0"
    first = run.errors["detail"][run.errors["kind"] == ErrorKind.CONNECT_FAILED][0]
    return f"connect failures {count} (first: {first})"


def summary_lines(summary: Summary, run: Run) -> list[str]:
    counts, latency = summary.counts, summary.latency_ms.from_sent
    loss = summary.rates.loss

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    lines = [
        f"messages sent {counts.messages}, deliveries {counts.delivered} of "
        f"{counts.expected} expected, late {counts.late} (after the drain window)",
        f"fan-out latency p50 {ms(latency.p50)}, p99 {ms(latency.p99)}, max {ms(latency.max)}",
        f"lost {counts.lost} ({100 * loss.rate:.3f} %, 95 % CI {100 * loss.ci95[0]:.3f}–"
        f"{100 * loss.ci95[1]:.3f} %), duplicates {counts.duplicates}, "
        f"out of order {counts.out_of_order}, error frames {counts.error_frames}",
        f"connections {len(run.membership['client'])}, dropped by the server"
        f" {counts.dropped}, {_connect_failures(summary, run)},"
        f" unexpected receipts {counts.unexpected}",
    ]
    lines.append(saturation.describe(summary.saturation))
    lines += [f"WARNING: {problem}" for problem in summary.validity]
    return lines


def require_locust() -> None:
    if shutil.which("locust", path=str(Path(sys.executable).parent)) is None:
        raise RunError("Locust is not installed in this environment (run `make run`)")


def summarize_run(run_dir: Path, report: bool, indent: str = "") -> Run:
    """Print the run's summary lines (and write its report); return the run."""
    try:
        run = read_run(run_dir)
        summary = analyze(run)
    except RunDirError as error:
        raise RunError(str(error)) from None
    for line in summary_lines(summary, run):
        print(f"{indent}{line}")
    if report:
        from reports.prices import Prices
        from reports.render import write_report

        print(f"{indent}report: {write_report(run_dir, Prices())}")
    return run


def run_command(args: argparse.Namespace) -> int:
    require_locust()
    run_dir = execute(args)
    run = summarize_run(run_dir, report=not args.no_report)
    print(f"run directory: {run_dir}")
    mismatches = run.meta.get("collection", {}).get("scenario_mismatches", {})
    for process, why in mismatches.items():
        print(f"fanbench: worker {process} did not run this scenario: {why}", file=sys.stderr)
    if mismatches:
        return EXIT_WRONG_SCENARIO
    if not run.meta.get("collection", {}).get("complete", True):
        print(
            "fanbench: the run is incomplete (records are missing; see the warnings above)",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return 0
