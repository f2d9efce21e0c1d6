"""Benchmark 1, handler_fanout: one sendmessage to N real clients, baseline vs optimized.

Two local stages run side by side (one per variant), each with N WebSocket
clients of this process connected, and 20 ms injected on every @connections
POST. The baseline is the tutorial's handler ported faithfully (every post at
once, at most 50 in flight), the optimized one posts 32 at a time. Per audience
size, sends alternate between the variants (3 each); each is timed from the
sender's ``send()`` to the *last* recipient's frame. CPU per post is the
SendMessageFunction worker's CPU time over the invocation (psutil on the stage's
process tree) divided by the recipients; the stage's own gateway CPU is reported
beside it. Lambda $ per million messages is the request plus the measured
duration at 1,024 MB (arm64 list price, ``reports.prices``); the API Gateway
messages and the reads, the same for both variants, are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.fleet import ConnectReport, Fleet, Watch
from bench.itemsize import item_size, items_per_page
from bench.procs import STAGE
from bench.record import BenchResult, Ratio, Scalar, Size, median, now_utc, safe_ratio
from bench.stagetools import BenchStage, bench_stage, raise_open_files
from fanbench_common.resources import SEND_FUNCTION
from loadtest.stage.config import StageConfig
from loadtest.stage.faults import Faults
from reports.prices import Prices, lambda_usd_per_million_sends

NAME = "handler_fanout"
VARIANTS = ("baseline", "optimized")
AWS_TIMEOUT_S = 29.0
"""The SendMessageFunction's template Timeout and API Gateway's integration timeout."""
"""Set when the baseline posted one at a time; kept so a run shows whether it still holds."""
MEMORY_GB = 1.0
"""template.yaml's SendMessageFunction MemorySize, 1,024 MB."""


@dataclass(frozen=True)
class Plan:
    audiences: tuple[int, ...]
    reps: int = 3
    post_latency_ms: float = 20.0
    warmup_clients: int = 64
    provisioned: int = 2
    concurrency: int = 8
    function_timeout_s: float = AWS_TIMEOUT_S


PLANS: dict[str, Plan] = {
    "smoke": Plan(audiences=(8, 16), reps=2, warmup_clients=8),
    "default": Plan(audiences=(100, 1000)),
    "full": Plan(audiences=(100, 1000, 2000, 5000)),
}


@dataclass
class Sample:
    variant: str
    planned: int
    audience: int
    recipients: int
    delivered: int
    duplicates: int
    to_last_s: float
    to_first_s: float
    within_aws_timeout: int
    lambda_ms: float
    lambda_cpu_s: float
    stage_cpu_s: float
    fanout_ms: float
    scan_pages: int


def _send_timeout_s(recipients: int, plan: Plan) -> float:
    return 30.0 + recipients * (plan.post_latency_ms + 15.0) / 1000 * 2


async def _one_send(
    stage: BenchStage, fleet: Fleet, variant: str, token: str, plan: Plan, planned: int
) -> Sample:
    recipients = len(fleet.clients) - 1
    timeout_s = _send_timeout_s(recipients, plan)
    invoked = stage.invocations()
    emf_before = len(stage.emf_records())
    cpu_before = stage.processes.sample()
    watch: Watch = await fleet.broadcast(token, timeout_s)
    await asyncio.to_thread(stage.wait_invocations, invoked + 1, timeout_s)
    cpu = stage.processes.sample().minus(cpu_before)
    await fleet.settle(watch, 0.05)
    durations = stage.durations_ms()
    fanout_ms, pages = math.nan, 0
    if variant == "optimized":
        records = await asyncio.to_thread(stage.wait_emf, emf_before + 1, 5.0)
        if len(records) > emf_before:
            fanout_ms = float(records[-1].get("FanoutMs", math.nan))
            pages = int(records[-1].get("ScanPages", 0))
    return Sample(
        variant=variant, planned=planned, audience=len(fleet.clients), recipients=recipients,
        delivered=watch.delivered, duplicates=watch.duplicates, to_last_s=watch.to_last_s,
        to_first_s=watch.to_first_s,
        within_aws_timeout=watch.delivered_within(AWS_TIMEOUT_S),
        lambda_ms=durations[-1] if durations else math.nan,
        lambda_cpu_s=stage.processes.lambda_cpu(cpu, SEND_FUNCTION),
        stage_cpu_s=cpu.get(STAGE, 0.0), fanout_ms=fanout_ms, scan_pages=pages,
    )  # fmt: skip


def lambda_usd_per_million(lambda_ms: float, prices: Prices) -> float:
    """Lambda's part of a million sends: requests plus GB-seconds at the measured duration."""
    return lambda_usd_per_million_sends(lambda_ms, MEMORY_GB, prices)


def _row(samples: list[Sample], connect_rate: float | None) -> dict[str, Scalar]:
    first = samples[0]
    lambda_ms = median(s.lambda_ms for s in samples)
    posts = [s.recipients for s in samples]
    return {
        "N": first.audience,
        "variant": first.variant,
        "recipients": first.recipients,
        "to last delivery s": median(s.to_last_s for s in samples),
        "min s": min(s.to_last_s for s in samples),
        "max s": max(s.to_last_s for s in samples),
        "to first ms": median(s.to_first_s * 1000 for s in samples),
        "posts/s": median(s.recipients / s.to_last_s for s in samples if s.to_last_s > 0),
        "Lambda CPU ms/post": median(
            s.lambda_cpu_s * 1000 / p for s, p in zip(samples, posts, strict=True) if p
        ),
        "stage CPU ms/post": median(
            s.stage_cpu_s * 1000 / p for s, p in zip(samples, posts, strict=True) if p
        ),
        "Lambda ms": lambda_ms,
        "Lambda $/M msgs": lambda_usd_per_million(lambda_ms, Prices()),
        "delivered": min(s.delivered for s in samples),
        "duplicates": sum(s.duplicates for s in samples),
        f"within {AWS_TIMEOUT_S:.0f} s": min(s.within_aws_timeout for s in samples),
        "scan pages": max(s.scan_pages for s in samples) if first.variant == "optimized" else None,
        "connects/s": connect_rate,
    }


Connects = dict[tuple[str, int], ConnectReport]


async def _measure(stages: dict[str, BenchStage], plan: Plan) -> tuple[list[Sample], Connects]:
    connects: Connects = {}
    samples: list[Sample] = []
    async with contextlib.AsyncExitStack() as stack:
        fleets = {v: await stack.enter_async_context(Fleet(stages[v].ws_url)) for v in VARIANTS}
        first = min(plan.warmup_clients, plan.audiences[0])
        await asyncio.gather(*(fleets[v].grow(first, 120.0) for v in VARIANTS))
        for variant in VARIANTS:  # warm-up: module-scope clients, connection pools
            await _one_send(stages[variant], fleets[variant], variant, f"warmup-{variant}", plan, 0)
        for audience in plan.audiences:
            reports = await asyncio.gather(
                *(fleets[v].grow(audience, 60.0 + audience / 20) for v in VARIANTS)
            )
            connects.update(((v, audience), r) for v, r in zip(VARIANTS, reports, strict=True))
            for rep in range(plan.reps):
                order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    token = f"fanout-{variant}-{audience}-{rep}-{time.time_ns()}"
                    samples.append(
                        await _one_send(
                            stages[variant], fleets[variant], variant, token, plan, audience
                        )
                    )
    return samples, connects


def page_boundary(stage: BenchStage) -> dict[str, Scalar]:
    """Where the baseline's single 1 MB scan page ends, from the items actually stored."""
    items = stage.table_items()
    if not items:
        return {}
    moto = max(item_size(i, moto=True) for i in items)
    aws = max(item_size(i) for i in items)
    return {
        "connection item bytes (moto rule)": moto,
        "connection item bytes (DynamoDB rule)": aws,
        "items per 1 MB scan page (moto)": items_per_page(moto, moto=True),
        "items per 1 MB scan page (DynamoDB)": items_per_page(aws),
    }


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    started, began = now_utc(), time.perf_counter()
    raise_open_files(2 * max(plan.audiences) + 2048)
    with contextlib.ExitStack() as stack:
        stages = {
            v: stack.enter_context(bench_stage(_config(v, plan), work_dir / f"stage-{v}"))
            for v in VARIANTS
        }
        samples, connects = asyncio.run(_measure(stages, plan))
        figures = page_boundary(stages["baseline"])
    per_page = int(figures.get("items per 1 MB scan page (moto)") or 0)
    per_aws_page = int(figures.get("items per 1 MB scan page (DynamoDB)") or 0)
    notes = [
        f"The baseline's one unpaginated scan sees only the first 1 MB page, {per_page:,} "
        f"connection items here (moto's rule; ~{per_aws_page:,} on DynamoDB): every N "
        "measured fits in one page, so the baseline misses nobody."
    ]
    rows: list[dict[str, Scalar]] = []
    ratios: list[Ratio] = []
    for audience in plan.audiences:
        by_variant = {
            v: [s for s in samples if (s.variant, s.planned) == (v, audience)] for v in VARIANTS
        }
        for variant in VARIANTS:
            report = connects[(variant, audience)]
            got = by_variant[variant][0].audience
            if got < audience:
                notes.append(
                    f"{variant} N={audience:,}: only {got:,} clients connected "
                    f"({report.failed_attempts} failed attempts)"
                )
            rows.append(_row(by_variant[variant], report.per_second if report.connected else None))
        base, opt = (median(s.to_last_s for s in by_variant[v]) for v in VARIANTS)
        conditions = f"{plan.post_latency_ms:g} ms per post, median of {plan.reps}"
        ratios.append(
            Ratio(
                f"baseline/optimized time to last delivery, N={audience:,}",
                safe_ratio(base, opt),
                None,
                f"{base:.3f} s / {opt:.3f} s, {conditions}",
            )
        )
        cpu = {
            v: median(s.lambda_cpu_s * 1000 / s.recipients for s in by_variant[v] if s.recipients)
            for v in VARIANTS
        }
        ratios.append(
            Ratio(
                f"baseline/optimized Lambda CPU per post, N={audience:,}",
                safe_ratio(cpu["baseline"], cpu["optimized"]),
                None,
                f"{cpu['baseline']:.3f} / {cpu['optimized']:.3f} ms, {conditions}",
            )
        )
        usd = {
            v: lambda_usd_per_million(median(s.lambda_ms for s in by_variant[v]), Prices())
            for v in VARIANTS
        }
        ratios.append(
            Ratio(
                f"baseline/optimized Lambda $ per million messages, N={audience:,}",
                safe_ratio(usd["baseline"], usd["optimized"]),
                None,
                f"${usd['baseline']:.2f} / ${usd['optimized']:.2f}, {conditions}, 1,024 MB arm64",
            )
        )
    notes.append(
        f"Function and integration timeouts as on AWS ({AWS_TIMEOUT_S:.0f} s): the "
        f"'within {AWS_TIMEOUT_S:.0f} s' column is how many recipients were reached in time."
    )
    parameters: dict[str, Any] = {**asdict(plan), "variants": list(VARIANTS)}
    return BenchResult(
        NAME, size, parameters, rows, ratios, notes, figures,
        started_at=started, duration_s=time.perf_counter() - began,
    )  # fmt: skip


def _config(variant: str, plan: Plan) -> StageConfig:
    return StageConfig(
        variant=variant,
        provisioned=plan.provisioned,
        concurrency=plan.concurrency,
        function_timeout_s=plan.function_timeout_s,
        integration_timeout_s=plan.function_timeout_s,
        faults=Faults(post_latency_ms=plan.post_latency_ms),
        dynamodb_emulator="moto",  # its scan-page figures follow moto's item-size rule
    )
