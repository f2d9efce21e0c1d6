"""Benchmark at_limits: every variant where AWS pushes back, side by side.

One stage per variant and experiment, N real clients, ``reps`` broadcasts each;
every broadcast is watched until each receiver has the message or the watch
times out, then a little longer so late duplicates are counted.

* **throttled**: @connections throttled to ``throttle_rps`` (burst
  ``throttle_burst``): the account's 10,000/s quota scaled down, so a few
  hundred receivers meet it; every post takes ``throttled_latency_ms``.
* **near the deadline**: every post takes ``deadline_latency_ms`` and every
  function times out after ``deadline_timeout_s``: not everyone can be reached,
  and what matters is that nobody gets the message twice and the handler's EMF
  counts (Delivered, Undelivered, Unknown) say what the receivers got.

Variants: the AWS tutorial's own Node.js app (``tutorial``, its template but for
the experiment's timeout), its Python port ``baseline``, ``optimized`` with each post client
(boto3, signed), and ``sharded`` with a shard size that splits the audience
into ``shards`` fan-outs (the template's 500 would post a 300-receiver audience
from sendmessage itself).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fleet import Fleet
from bench.record import BenchResult, Scalar, Size, median, now_utc
from bench.stagetools import BenchStage, bench_stage, raise_open_files
from fanbench_common.resources import SEND_FUNCTION
from loadtest.stage.config import StageConfig
from loadtest.stage.faults import Faults

NAME = "at_limits"
VARIANTS = ("tutorial", "baseline", "optimized", "optimized-signed", "sharded")
SETTLE_S = 1.0


@dataclass(frozen=True)
class Plan:
    receivers: int
    reps: int = 3
    throttle_rps: float = 300.0
    throttle_burst: float = 100.0
    throttled_latency_ms: float = 20.0
    deadline_latency_ms: float = 400.0
    deadline_timeout_s: float = 3.0
    shards: int = 3
    concurrency: int = 8
    variants: tuple[str, ...] = VARIANTS


PLANS: dict[str, Plan] = {
    "smoke": Plan(
        receivers=20,
        reps=1,
        throttle_rps=20.0,
        throttle_burst=5.0,
        variants=("optimized", "sharded"),
    ),
    "default": Plan(receivers=300),
    "full": Plan(receivers=300, reps=5),
}


@dataclass
class Sample:
    experiment: str
    variant: str
    receivers: int
    delivered: int
    duplicates: int
    to_last_s: float
    emf: dict[str, int]
    """The optimized handler's own counts for the send (empty for the others)."""


def _config(variant: str, experiment: str, plan: Plan) -> StageConfig:
    base, _, client = variant.partition("-")
    parameters = {"PostClient": "signed" if client == "signed" else "boto3"}
    if base == "tutorial":
        parameters = {}  # its own template has none
    if base == "sharded":
        parameters["ShardSize"] = str(math.ceil(plan.receivers / plan.shards))
    if experiment == "throttled":
        return StageConfig(
            variant=base,
            concurrency=plan.concurrency,
            parameters=parameters,
            throttle_rps=plan.throttle_rps,
            throttle_burst=plan.throttle_burst,
            faults=Faults(post_latency_ms=plan.throttled_latency_ms),
        )
    return StageConfig(
        variant=base,
        concurrency=plan.concurrency,
        parameters=parameters,
        function_timeout_s=plan.deadline_timeout_s,
        faults=Faults(post_latency_ms=plan.deadline_latency_ms),
    )


def _watch_timeout_s(experiment: str, plan: Plan) -> float:
    if experiment == "throttled":
        return 30.0
    return plan.deadline_timeout_s * 2 + 2.0  # past every function's deadline: all is in


EMF_COUNTS = ("Recipients", "Delivered", "Undelivered", "Unknown", "Failed", "Gone")


async def _sends(stage: BenchStage, experiment: str, variant: str, plan: Plan) -> list[Sample]:
    samples: list[Sample] = []
    async with Fleet(stage.ws_url) as fleet:
        report = await fleet.grow(plan.receivers + 1, 60.0 + plan.receivers / 20)
        if report.connected < 0.9 * (plan.receivers + 1):  # a few may fail on a loaded host
            raise RuntimeError(f"{variant}: only {report.connected} clients connected")
        for rep in range(plan.reps):
            records = len(stage.emf_records())
            token = f"{experiment}-{variant}-{rep}-{time.time_ns()}"
            watch = await fleet.broadcast(token, _watch_timeout_s(experiment, plan))
            await fleet.settle(watch, SETTLE_S)
            emf: dict[str, int] = {}
            if variant.startswith("optimized"):
                found = await asyncio.to_thread(stage.wait_emf, records + 1, 10.0)
                if len(found) > records:
                    emf = {k: int(found[-1].get(k, 0)) for k in EMF_COUNTS}
            samples.append(
                Sample(
                    experiment,
                    variant,
                    len(fleet.clients) - 1,
                    watch.delivered,
                    watch.duplicates,
                    watch.to_last_s,
                    emf,
                )
            )
            await asyncio.to_thread(stage.wait_invocations, rep + 1, 10.0, SEND_FUNCTION)
    return samples


def counts_match(sample: Sample) -> bool:
    """The handler's counts bound what the receivers got: everything counted delivered
    arrived, and what else arrived was counted unknown (sent, answer not heard)."""
    delivered, unknown = sample.emf.get("Delivered", 0), sample.emf.get("Unknown", 0)
    return delivered <= sample.delivered <= delivered + unknown


def _row(samples: list[Sample]) -> dict[str, Scalar]:
    first = samples[0]
    row: dict[str, Scalar] = {
        "experiment": first.experiment,
        "variant": first.variant,
        "receivers": first.receivers,
        "broadcasts": len(samples),
        "delivered (each)": " / ".join(str(s.delivered) for s in samples),
        "duplicates (each)": " / ".join(str(s.duplicates) for s in samples),
        "to last s (median)": median(s.to_last_s for s in samples),
    }
    if any(s.emf for s in samples):
        row["EMF delivered / undelivered / unknown (each)"] = ", ".join(
            f"{s.emf.get('Delivered', 0)}/{s.emf.get('Undelivered', 0)}/{s.emf.get('Unknown', 0)}"
            for s in samples
        )
    return row


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    started, began = now_utc(), time.perf_counter()
    raise_open_files(4 * plan.receivers + 2048)
    rows: list[dict[str, Scalar]] = []
    notes: list[str] = []
    for experiment in ("throttled", "near the deadline"):
        for variant in plan.variants:
            config = _config(variant, experiment, plan)
            where = work_dir / f"{experiment.replace(' ', '-')}-{variant}"
            with bench_stage(config, where) as stage:
                samples = asyncio.run(_sends(stage, experiment, variant, plan))
            rows.append(_row(samples))
            for sample in samples:
                if sample.emf and not counts_match(sample):
                    notes.append(
                        f"{experiment}, {variant}: EMF says {sample.emf.get('Delivered')} "
                        f"delivered and {sample.emf.get('Unknown')} unknown, the receivers "
                        f"got {sample.delivered}"
                    )
    notes.append(
        f"throttled: @connections token bucket {plan.throttle_rps:g}/s, burst "
        f"{plan.throttle_burst:g}; {plan.throttled_latency_ms:g} ms per post. near the "
        f"deadline: {plan.deadline_latency_ms:g} ms per post, every function's timeout "
        f"{plan.deadline_timeout_s:g} s. sharded: ShardSize "
        f"{math.ceil(plan.receivers / plan.shards)} ({plan.shards} fan-outs). "
        f"{plan.concurrency} local Lambda slots."
    )
    parameters: dict[str, Any] = {**asdict(plan), "variants": list(plan.variants)}
    return BenchResult(
        NAME, size, parameters, rows, [], notes,
        started_at=started, duration_s=time.perf_counter() - began,
    )  # fmt: skip
