"""Benchmark stage_as_aws: the AWS tutorial's own app beside fanbench's handlers, on the stage
as AWS is (TLS callbacks, Lambda's freeze, the account quotas: every default on).

One stage per contender, side by side in one run, each with N WebSocket clients of
this process and 20 ms injected on every @connections POST:

* ``tutorial``: the AWS tutorial's Node.js app (SDK v3), unmodified, with its template;
* ``baseline``: fanbench's Python port of it;
* ``optimized``: fanbench's optimized handler, with the template's ``PostClient``;
* ``optimized signed``: the same with ``PostClient=signed`` (the lean post path);
* at full size also ``baseline http`` and ``optimized http``: the same handlers posting
  over plain HTTP, as the stage let them before, to show the cost it hid.

Per N, sends alternate between contenders (``reps`` each, order reversed every
rep) and are timed from the sender's ``send()`` to the last recipient's frame.
Lambda CPU per post is the sendmessage worker's CPU time over the invocation (psutil
on the stage's process tree) divided by the recipients; Lambda $ per million
delivered messages prices the request and the measured duration at the template's
MemorySize (arm64 list price for all; the tutorial's template deploys x86_64, 25%
more per GB-second). Ratios are against the tutorial.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.fleet import Fleet, Watch
from bench.procs import STAGE
from bench.record import BenchResult, Ratio, Scalar, Size, median, now_utc, safe_ratio
from bench.stagetools import BenchStage, bench_stage, raise_open_files
from loadtest.stage.config import StageConfig, resolve_template
from loadtest.stage.faults import Faults
from reports.prices import Prices

NAME = "stage_as_aws"
AWS_TIMEOUT_S = 29.0
TUTORIAL = "tutorial"


@dataclass(frozen=True)
class Contender:
    label: str
    variant: str
    parameters: tuple[tuple[str, str], ...] = ()
    callbacks: str = "https"


CONTENDERS = (
    Contender(TUTORIAL, "tutorial"),
    Contender("baseline", "baseline"),
    Contender("optimized", "optimized"),
    Contender("optimized signed", "optimized", (("PostClient", "signed"),)),
)
HTTP_CONTRAST = (
    Contender("baseline http", "baseline", callbacks="http"),
    Contender("optimized http", "optimized", callbacks="http"),
)
"""The same handlers handed a plain-HTTP ``CallbackUrl``: what the stage hid before TLS."""


@dataclass(frozen=True)
class Plan:
    audiences: tuple[int, ...]
    reps: int = 3
    post_latency_ms: float = 20.0
    warmup_clients: int = 16
    provisioned: int = 1
    concurrency: int = 8
    contenders: tuple[Contender, ...] = field(default=CONTENDERS)


PLANS: dict[str, Plan] = {
    # Two contenders at smoke size (the tutorial's Node.js path and a Python one): enough to
    # hold the wiring, short enough for the test suite.
    "smoke": Plan(audiences=(8,), reps=1, warmup_clients=4, contenders=CONTENDERS[:2]),
    "default": Plan(audiences=(100, 300)),
    "full": Plan(audiences=(100, 300, 1000), contenders=CONTENDERS + HTTP_CONTRAST),
}


@dataclass
class Sample:
    label: str
    planned: int
    recipients: int
    delivered: int
    to_last_s: float
    lambda_ms: float
    lambda_cpu_s: float
    stage_cpu_s: float


@dataclass(frozen=True)
class Target:
    """A running contender: its stage and the sendmessage function's logical id and memory."""

    stage: BenchStage
    function: str
    memory_mb: int


def config_for(contender: Contender, plan: Plan) -> StageConfig:
    return StageConfig(
        variant=contender.variant,
        parameters=dict(contender.parameters),
        callbacks=contender.callbacks,
        provisioned=plan.provisioned,
        concurrency=plan.concurrency,
        function_timeout_s=AWS_TIMEOUT_S,
        integration_timeout_s=AWS_TIMEOUT_S,
        faults=Faults(post_latency_ms=plan.post_latency_ms),
    )


def _sendmessage(config: StageConfig) -> tuple[str, int]:
    spec = resolve_template(config).routes["sendmessage"]
    return spec.logical_id, spec.memory_mb


def lambda_usd_per_million_messages(lambda_ms: float, memory_mb: int, recipients: int) -> float:
    """Lambda's part of a million delivered messages: the request and its GB-seconds, shared."""
    prices = Prices()
    if recipients <= 0 or math.isnan(lambda_ms):
        return math.nan
    per_send = (
        prices.lambda_per_million_requests / 1e6
        + lambda_ms / 1000 * memory_mb / 1024 * prices.lambda_per_gb_second
    )
    return 1e6 * per_send / recipients


async def _one_send(target: Target, fleet: Fleet, label: str, token: str, planned: int) -> Sample:
    stage = target.stage
    recipients = len(fleet.clients) - 1
    timeout_s = 30.0 + recipients * 0.1
    invoked = stage.invocations(target.function)
    cpu_before = stage.processes.sample()
    watch: Watch = await fleet.broadcast(token, timeout_s)
    await asyncio.to_thread(stage.wait_invocations, invoked + 1, timeout_s, target.function)
    cpu = stage.processes.sample().minus(cpu_before)
    await fleet.settle(watch, 0.05)
    durations = stage.durations_ms(target.function)
    return Sample(
        label=label, planned=planned, recipients=recipients, delivered=watch.delivered,
        to_last_s=watch.to_last_s, lambda_ms=durations[-1] if durations else math.nan,
        lambda_cpu_s=stage.processes.lambda_cpu(cpu, target.function),
        stage_cpu_s=cpu.get(STAGE, 0.0),
    )  # fmt: skip


async def _measure(targets: dict[str, Target], plan: Plan) -> list[Sample]:
    labels = [c.label for c in plan.contenders]
    samples: list[Sample] = []
    async with contextlib.AsyncExitStack() as stack:
        fleets = {
            label: await stack.enter_async_context(Fleet(targets[label].stage.ws_url))
            for label in labels
        }
        first = min(plan.warmup_clients, plan.audiences[0])
        await asyncio.gather(*(fleets[label].grow(first, 120.0) for label in labels))
        for label in labels:  # warm-up: module-scope clients, connection pools
            await _one_send(targets[label], fleets[label], label, f"warmup-{label}", 0)
        for audience in plan.audiences:
            for label in labels:  # one fleet at a time: no contender grows while another sends
                await fleets[label].grow(audience, 60.0 + audience / 10)
            for rep in range(plan.reps):
                order = labels if rep % 2 == 0 else labels[::-1]
                for label in order:
                    token = f"aws-{label}-{audience}-{rep}-{time.time_ns()}"
                    sample = await _one_send(targets[label], fleets[label], label, token, audience)
                    samples.append(sample)
    return samples


def _per_post_ms(samples: list[Sample], seconds: str) -> float:
    return median(getattr(s, seconds) * 1000 / s.recipients for s in samples if s.recipients)


def _row(samples: list[Sample], memory_mb: int) -> dict[str, Scalar]:
    first = samples[0]
    lambda_ms = median(s.lambda_ms for s in samples)
    return {
        "N": first.planned,
        "contender": first.label,
        "recipients": first.recipients,
        "delivered": min(s.delivered for s in samples),
        "to last delivery s": median(s.to_last_s for s in samples),
        "min s": min(s.to_last_s for s in samples),
        "max s": max(s.to_last_s for s in samples),
        "Lambda CPU ms/post": _per_post_ms(samples, "lambda_cpu_s"),
        "stage CPU ms/post": _per_post_ms(samples, "stage_cpu_s"),
        "Lambda ms": lambda_ms,
        "MemorySize MB": memory_mb,
        "Lambda $/M msgs": lambda_usd_per_million_messages(lambda_ms, memory_mb, first.recipients),
    }


def _ratios(rows: list[dict[str, Scalar]], audience: int, plan: Plan) -> list[Ratio]:
    by_label = {str(row["contender"]): row for row in rows if row["N"] == audience}
    tutorial = by_label[TUTORIAL]
    callbacks = {c.label: c.callbacks for c in plan.contenders}
    ratios = []
    for label, row in by_label.items():
        if label == TUTORIAL:
            continue
        conditions = (
            f"{plan.post_latency_ms:g} ms per post, {callbacks[label]} callbacks against the "
            f"tutorial's https, median of {plan.reps}"
        )
        for column, what in (
            ("to last delivery s", "time to last delivery"),
            ("Lambda CPU ms/post", "Lambda CPU per post"),
            ("Lambda $/M msgs", "Lambda $ per million messages"),
        ):
            mine, theirs = float(row[column] or math.nan), float(tutorial[column] or math.nan)
            ratios.append(
                Ratio(
                    f"{label}/tutorial {what}, N={audience:,}",
                    safe_ratio(mine, theirs),
                    None,
                    f"{mine:.4g} / {theirs:.4g}, {conditions}",
                )
            )
    return ratios


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    started, began = now_utc(), time.perf_counter()
    raise_open_files(len(plan.contenders) * max(plan.audiences) + 2048)
    with contextlib.ExitStack() as stack:
        targets: dict[str, Target] = {}
        for index, contender in enumerate(plan.contenders):
            config = config_for(contender, plan)
            function, memory_mb = _sendmessage(config)
            stage = stack.enter_context(bench_stage(config, work_dir / f"stage-{index}"))
            targets[contender.label] = Target(stage, function, memory_mb)
        samples = asyncio.run(_measure(targets, plan))
    rows: list[dict[str, Scalar]] = []
    ratios: list[Ratio] = []
    for audience in plan.audiences:
        for contender in plan.contenders:
            mine = [s for s in samples if (s.label, s.planned) == (contender.label, audience)]
            rows.append(_row(mine, targets[contender.label].memory_mb))
        ratios += _ratios(rows, audience, plan)
    notes = [
        "Every stage default is AWS's: functions post to https://{domainName}/{stage} "
        "(TLS, as every @connections call on AWS), environments are frozen between "
        "invocations, callbacks are throttled at 10,000/s (burst 5,000), connects at 500/s.",
        "Lambda CPU per post is measured on this machine's cores; on AWS a function's CPU "
        "share grows with its MemorySize (a full vCPU at 1,769 MB), so durations and "
        "$ there differ; the CPU ratio is the portable figure.",
    ]
    parameters: dict[str, Any] = {
        **asdict(plan),
        "contenders": [asdict(c) for c in plan.contenders],
    }
    return BenchResult(
        NAME, size, parameters, rows, ratios, notes, {},
        started_at=started, duration_s=time.perf_counter() - began,
    )  # fmt: skip
