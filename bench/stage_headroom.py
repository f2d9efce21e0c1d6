"""Benchmark 5, stage_headroom: what the local stage itself can take, so runs can tell who limits.

* @connections POST: P poster *processes* (T threads each, urllib3 with a SigV4
  header signed once — the stage checks the header is there, not the signature,
  so posters spend little CPU) post round-robin to K receivers in another
  process for a fixed window. The stage process's CPU over the window (psutil)
  gives its CPU per post and so its one-core ceiling, posts per stage-CPU-second;
  frames delivered per stage-CPU-second likewise, at two payload sizes.
* Beside it, one optimized sendmessage to the same K receivers: the handler's
  post rate, to compare with the stage's ceiling (headroom factor).
* $connect storms: C clients connecting, 32 at a time, to stages that differ
  only in their DynamoDB emulator (dynalite, moto) and in how many execution
  environments run at once (the default 8, and one per core); the stages are up
  together and take turns, order alternating by rep. Connects/s, and the CPU
  per connect of the emulator, the ConnectFunction workers, the stage and the
  client, against AWS's 500 new connections per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fleet import Fleet
from bench.posting import SignedPoster
from bench.procs import DYNALITE, MOTO, STAGE, CpuSample
from bench.record import BenchResult, Ratio, Scalar, Size, median, now_utc, safe_ratio
from bench.stagetools import BenchStage, bench_stage, raise_open_files
from bench.swarm import Swarm
from fanbench_common.resources import CONNECT_FUNCTION
from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import wait_until

NAME = "stage_headroom"
AWS_CONNECTS_PER_S = 500
READY_TIMEOUT_S = 120.0
"""How long posters may take to start (spawned, they import boto3) and sign their first post."""
DEFAULT_ENVIRONMENTS = StageConfig().concurrency
CORES = os.cpu_count() or 2
EMULATOR_ROLES = {"dynalite": DYNALITE, "moto": MOTO}
STORM_CLIENTS = 32
SETTLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class StormSetup:
    emulator: str
    environments: int

    @property
    def label(self) -> str:
        return f"{self.emulator}, {self.environments} environments"


STORMS = tuple(
    dict.fromkeys(
        StormSetup(emulator, environments)
        for environments in (DEFAULT_ENVIRONMENTS, CORES)
        for emulator in ("dynalite", "moto")
    )
)
"""The stage's default (dynalite, 8 environments), the former default (moto), and both
with one environment per core: on 2 cores, 8 workers contending for them cost about twice
the CPU per invocation."""


@dataclass(frozen=True)
class Plan:
    receivers: int
    posters: int
    threads: int
    window_s: float
    payloads: tuple[int, ...]
    connects: int
    reps: int = 3


PLANS: dict[str, Plan] = {
    "smoke": Plan(receivers=8, posters=2, threads=2, window_s=0.5, payloads=(64,), connects=16,
                  reps=1),
    "default": Plan(receivers=100, posters=3, threads=8, window_s=3.0, payloads=(64, 4096),
                    connects=400),
    "full": Plan(receivers=200, posters=4, threads=8, window_s=6.0, payloads=(64, 4096, 32768),
                 connects=1000, reps=5),
}  # fmt: skip


def poster_process(
    callback_url: str, ids: list[str], payload: int, threads: int, start_line: Any,
    window_s: float, results: Any,
) -> None:  # fmt: skip
    """A poster process: ``threads`` threads post round-robin for ``window_s``, from the moment
    every poster and the benchmark have reached ``start_line`` (a barrier): a fixed start time
    left slow-starting posters on a busy host with nothing to do (a window of 0 posts)."""
    poster = SignedPoster(callback_url, pool_size=threads, sign_each=False)
    data = b"h" * payload
    poster.post(ids[0], data)  # sign once, open the first connection
    start_line.wait(READY_TIMEOUT_S)
    deadline = time.time() + window_s
    max_posts = int(window_s * 20_000) + 1

    def loop(offset: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in range(max_posts):
            if time.time() >= deadline:
                break
            outcome = poster.post(ids[(offset + n * threads) % len(ids)], data)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    cpu = time.process_time()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(loop, range(threads)))
    totals: dict[str, int] = {}
    for part in parts:
        for outcome, count in part.items():
            totals[outcome] = totals.get(outcome, 0) + count
    results.put({"outcomes": totals, "cpu_s": time.process_time() - cpu, "end": time.time()})


@dataclass
class Window:
    payload: int
    posts: int
    delivered: int
    seconds: float
    stage_cpu_s: float
    poster_cpu_s: float
    frames_out: int
    frames_arrived: bool


def _post_window(
    stage: BenchStage, swarm: Swarm, ids: list[str], payload: int, plan: Plan
) -> Window:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_line = context.Barrier(plan.posters + 1)
    arguments = (stage.callback_url, ids, payload, plan.threads, start_line, plan.window_s)
    processes = [
        context.Process(target=poster_process, args=(*arguments, results), daemon=True)
        for _ in range(plan.posters)
    ]
    for process in processes:
        process.start()
    frames_before = swarm.frames()
    out_before = int(stage.stats()["gateway"].get("frames_out", 0))
    start_line.wait(READY_TIMEOUT_S)
    start_at = time.time()
    cpu_before: CpuSample = stage.processes.sample()
    reports = [results.get(timeout=plan.window_s + 60) for _ in processes]
    cpu = stage.processes.sample().minus(cpu_before)
    seconds = max(r["end"] for r in reports) - start_at
    for process in processes:
        process.join(timeout=10)
    delivered = sum(r["outcomes"].get("delivered", 0) for r in reports)
    frames_out = int(stage.stats()["gateway"].get("frames_out", 0)) - out_before
    arrived = _frames_arrived(swarm, frames_before + delivered)
    return Window(payload, sum(sum(r["outcomes"].values()) for r in reports), delivered, seconds,
                  cpu.get(STAGE, 0.0), sum(r["cpu_s"] for r in reports), frames_out,
                  arrived)  # fmt: skip


def _frames_arrived(swarm: Swarm, at_least: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.05) + 2):
        if swarm.frames() >= at_least:
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return False


def _handler_rate(stage: BenchStage, swarm: Swarm, token: str) -> float:
    invoked, emf_before = stage.invocations(), len(stage.emf_records())
    swarm.send(token)
    stage.wait_invocations(invoked + 1, 60.0)
    records = stage.wait_emf(emf_before + 1, 5.0)
    if len(records) <= emf_before:
        return math.nan
    emf = records[-1]
    return safe_ratio(float(emf.get("Delivered", 0)), float(emf.get("FanoutMs", 0)) / 1000)


def _post_row(windows: list[Window], plan: Plan) -> dict[str, Scalar]:
    return {
        "path": f"@connections POST, {windows[0].payload:,} B",
        "rate/s": median(w.delivered / w.seconds for w in windows),
        "stage CPU % of a core": median(100 * w.stage_cpu_s / w.seconds for w in windows),
        "stage CPU ms/op": median(1000 * w.stage_cpu_s / w.posts for w in windows if w.posts),
        "per stage-CPU-second": median(
            w.delivered / w.stage_cpu_s for w in windows if w.stage_cpu_s
        ),
        "frames out/s": median(w.frames_out / w.seconds for w in windows),
        "client CPU ms/op": median(1000 * w.poster_cpu_s / w.posts for w in windows if w.posts),
        "clients": f"{plan.posters} procs × {plan.threads} threads",
        "all delivered": all(w.delivered == w.posts and w.frames_arrived for w in windows),
    }


@dataclass
class Storm:
    setup: StormSetup
    connected: int
    seconds: float
    cpu: dict[str, float]
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return safe_ratio(self.connected, self.seconds)

    def per_connect_ms(self, role: str) -> float:
        return safe_ratio(1000 * self.cpu.get(role, 0.0), self.connected)

    @property
    def all_cpu_ms(self) -> float:
        """CPU per connect of every process involved: the stage's tree and the client."""
        return safe_ratio(1000 * (sum(self.cpu.values()) + self.client_cpu_s), self.connected)


async def _storm(stage: BenchStage, setup: StormSetup, count: int) -> Storm:
    async with Fleet(stage.ws_url, connect_concurrency=STORM_CLIENTS) as fleet:
        before, client_before = stage.processes.sample(), time.process_time()
        report = await fleet.grow(count, 60.0 + count / 20)
        cpu = stage.processes.sample().minus(before)
        client_cpu = time.process_time() - client_before
    return Storm(setup, report.connected, report.seconds, cpu, client_cpu)


def _settled(stage: BenchStage) -> bool:
    """Every client gone and every $disconnect run: the next storm starts from quiet."""
    stats = stage.stats()
    lambda_stats = stats["lambda"]
    return bool(
        stats["open_connections"] == 0
        and lambda_stats["running"] == 0
        and lambda_stats.get("queued_now", 0) == 0
    )


def _storms(plan: Plan, work_dir: Path) -> list[Storm]:
    """Every setup's stage up at once; storms take turns, the order reversed every other rep."""
    storms: list[Storm] = []
    with contextlib.ExitStack() as stack:
        stages = {
            setup: stack.enter_context(
                bench_stage(
                    StageConfig(
                        variant="optimized", dynamodb_emulator=setup.emulator,
                        concurrency=setup.environments, provisioned=setup.environments,
                    ),
                    work_dir / f"storm-{setup.emulator}-{setup.environments}",
                )
            )
            for setup in STORMS
        }  # fmt: skip
        for rep in range(plan.reps):
            order = STORMS if rep % 2 == 0 else tuple(reversed(STORMS))
            for setup in order:
                stage = stages[setup]
                storms.append(asyncio.run(_storm(stage, setup, plan.connects)))
                wait_until(lambda stage=stage: _settled(stage), SETTLE_TIMEOUT_S, 0.1)
    return storms


def _storm_row(setup: StormSetup, storms: list[Storm], plan: Plan) -> dict[str, Scalar]:
    mine = [storm for storm in storms if storm.setup == setup]
    role = EMULATOR_ROLES[setup.emulator]
    return {
        "path": f"$connect storm ({setup.label})",
        "rate/s": median(storm.rate for storm in mine),
        "stage CPU % of a core": median(
            100 * storm.cpu.get(STAGE, 0.0) / storm.seconds for storm in mine
        ),
        "stage CPU ms/op": median(storm.per_connect_ms(STAGE) for storm in mine),
        "emulator CPU ms/op": median(storm.per_connect_ms(role) for storm in mine),
        "ConnectFunction CPU ms/op": median(
            storm.per_connect_ms(f"lambda:{CONNECT_FUNCTION}") for storm in mine
        ),
        "client CPU ms/op": median(
            safe_ratio(1000 * storm.client_cpu_s, storm.connected) for storm in mine
        ),
        "all CPU ms/op": median(storm.all_cpu_ms for storm in mine),
        "clients": f"{plan.connects} clients, {STORM_CLIENTS} at a time",
        "all delivered": all(storm.connected == plan.connects for storm in mine),
    }


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    started, began = now_utc(), time.perf_counter()
    raise_open_files(plan.receivers + plan.connects * 2 + 2048)
    config = StageConfig(variant="optimized", provisioned=2)
    windows: list[Window] = []
    handler: list[float] = []
    with (
        bench_stage(config, work_dir / "stage") as stage,
        Swarm(stage.ws_url, plan.receivers) as swarm,
    ):
        ids = stage.connection_ids()
        _handler_rate(stage, swarm, "warmup")
        for rep in range(plan.reps):
            for payload in plan.payloads:
                windows.append(_post_window(stage, swarm, ids, payload, plan))
            handler.append(_handler_rate(stage, swarm, f"headroom-{rep}"))
    storms = _storms(plan, work_dir)
    rows = [_post_row([w for w in windows if w.payload == p], plan) for p in plan.payloads]
    rows += [_storm_row(setup, storms, plan) for setup in STORMS]
    rates = {
        setup: float(_storm_row(setup, storms, plan)["rate/s"] or math.nan) for setup in STORMS
    }
    all_cpu_ms = {
        setup: float(_storm_row(setup, storms, plan)["all CPU ms/op"] or math.nan)
        for setup in STORMS
    }
    ceiling = float(rows[0]["per stage-CPU-second"] or math.nan)
    handler_rate = median(handler)
    default_setup = StormSetup("dynalite", DEFAULT_ENVIRONMENTS)
    former_setup = StormSetup("moto", DEFAULT_ENVIRONMENTS)
    best_setup = max(STORMS, key=lambda setup: rates[setup] if math.isfinite(rates[setup]) else 0)
    figures: dict[str, Scalar] = {
        "stage @connections ceiling, posts per stage-CPU-second (64 B)": ceiling,
        "optimized handler post rate, posts/s (same receivers)": handler_rate,
        **{f"$connect rate, connects/s ({setup.label})": rates[setup] for setup in STORMS},
        **{
            f"$connect capacity of {CORES} idle cores, connects/s ({setup.label})": safe_ratio(
                CORES * 1000.0, all_cpu_ms[setup]
            )
            for setup in STORMS
        },
    }
    ratios = [
        Ratio("stage POST ceiling / optimized handler post rate", safe_ratio(ceiling, handler_rate),
              None, "> 1: one handler invocation cannot saturate the stage's core"),
        *(
            Ratio(f"dynalite / moto $connect rate, {environments} environments",
                  safe_ratio(rates[StormSetup("dynalite", environments)],
                             rates[StormSetup("moto", environments)]),
                  None, "same stage otherwise, storms alternating")
            for environments in dict.fromkeys((DEFAULT_ENVIRONMENTS, CORES))
        ),
        Ratio(f"$connect rate ({default_setup.label}: the default) / former default (moto)",
              safe_ratio(rates[default_setup], rates[former_setup]), None, ""),
        Ratio(f"$connect rate ({best_setup.label}) / AWS 500 new connections/s",
              safe_ratio(rates[best_setup], AWS_CONNECTS_PER_S), 1.0,
              "≥ 1: the local stage takes a connect storm at AWS's account rate"),
    ]  # fmt: skip
    notes = [
        "The stage (gateway + @connections, one asyncio loop) runs on one core; 'per "
        "stage-CPU-second' is its one-core ceiling, valid whether or not this 2-core machine "
        "could drive it to 100 % (posters, receivers and moto share the cores).",
        "Posters replay one SigV4 header (the stage checks presence, not the signature), so the "
        "client side costs as little as an HTTP/1.1 keep-alive POST.",
        f"Connect storms: {CORES} cores here. Each storm's stages were started together "
        "(provisioned = environments, so no cold start is timed); between storms every "
        "$disconnect is let finish. 'capacity of idle cores' is the cores divided by the "
        "CPU per connect of every process involved (all CPU ms/op): what the storm would "
        "reach with the host to itself; the measured rate depends on the host's load.",
    ]
    parameters: dict[str, Any] = {**asdict(plan), "variant": "optimized"}
    return BenchResult(
        NAME, size, parameters, rows, ratios, notes, figures,
        started_at=started, duration_s=time.perf_counter() - began,
    )  # fmt: skip
