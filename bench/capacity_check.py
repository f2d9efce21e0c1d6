"""Benchmark capacity_check: the capacity model against the local stage's own times.

Calibration and validation run on separate stages, so the model never sees the
figures it is judged on. A calibration stage (no injected latency) measures the
stage's time per post and its fixed overhead: the slope and intercept of time to
last delivery over two audience sizes. With those two figures and the stage's
other parameters (``reports.capacity.LOCAL_STAGE``), the model predicts the time
to last delivery with 20 ms injected on every post, at each N; a second stage
with that latency then measures it (median of the reps). The ratio
predicted / measured should lie within 0.75-1.25 for N <= 2,000 (``--size full``
adds larger N, reported without a target).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.fleet import Fleet
from bench.record import BenchResult, Ratio, Scalar, Size, median, now_utc, safe_ratio
from bench.stagetools import BenchStage, bench_stage, raise_open_files
from loadtest.stage.config import StageConfig
from loadtest.stage.faults import Faults
from reports.capacity import LOCAL_STAGE, VARIANTS, predict

NAME = "capacity_check"
TOLERANCE = 0.25
VALIDATED_UP_TO = 2000


@dataclass(frozen=True)
class Plan:
    audiences: tuple[int, ...]
    calibration: tuple[int, int] = (50, 400)
    """Two audiences one function posts alone: the slope is the time per post, the intercept
    the fixed overhead."""
    parallel_calibration: int | None = 1500
    """An audience several fan-out functions share (sharded): how much of the host one post
    takes when they run at once, all processes counted."""
    reps: int = 3
    post_latency_ms: float = 20.0
    concurrency: int = 8
    provisioned: int = 2
    function_timeout_s: float = 120.0


PLANS: dict[str, Plan] = {
    "smoke": Plan(audiences=(20,), calibration=(10, 120), parallel_calibration=None, reps=3),
    "default": Plan(audiences=(100, 500, 1000, 2000)),
    "full": Plan(audiences=(100, 500, 1000, 2000, 5000)),
}


def _variants() -> list[str]:
    """The modelled variants this stage can run (sharded only once the stage has it)."""
    runnable = []
    for name in ("optimized", "sharded"):
        with contextlib.suppress(ValueError):
            StageConfig(variant=name)
            runnable.append(name)
    return runnable


def _config(variant: str, plan: Plan, latency_ms: float) -> StageConfig:
    return StageConfig(
        variant=variant,
        concurrency=plan.concurrency,
        provisioned=plan.provisioned,
        function_timeout_s=plan.function_timeout_s,
        integration_timeout_s=plan.function_timeout_s,
        faults=Faults(post_latency_ms=latency_ms),
    )


async def _times(stage: BenchStage, audiences: tuple[int, ...], reps: int) -> dict[int, float]:
    """Median time to last delivery per audience size (one fleet, grown size by size)."""
    medians: dict[int, float] = {}
    async with Fleet(stage.ws_url) as fleet:
        await fleet.grow(min(audiences), 120.0)
        await fleet.broadcast(f"warmup-{time.time_ns()}", 60.0)  # warm environments and pools
        for audience in audiences:
            await fleet.grow(audience, 60.0 + audience / 20)
            samples = []
            for rep in range(reps):
                invoked = stage.invocations()
                watch = await fleet.broadcast(f"cap-{audience}-{rep}-{time.time_ns()}", 120.0)
                await asyncio.to_thread(stage.wait_invocations, invoked + 1, 120.0)
                await fleet.settle(watch, 0.05)
                if watch.delivered < len(fleet.clients) - 1:
                    raise RuntimeError(
                        f"N={audience}: {watch.delivered} of {len(fleet.clients) - 1} delivered"
                    )
                samples.append(watch.to_last_s)
            medians[len(fleet.clients)] = median(samples)
    return medians


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    started, began = now_utc(), time.perf_counter()
    raise_open_files(2 * max(plan.audiences) + 2048)
    rows: list[dict[str, Scalar]] = []
    ratios: list[Ratio] = []
    figures: dict[str, Scalar] = {}
    for variant in _variants():
        parallel = plan.parallel_calibration if VARIANTS[variant].shard_size else None
        sizes = (*plan.calibration, parallel) if parallel else plan.calibration
        with bench_stage(_config(variant, plan, 0.0), work_dir / f"calibrate-{variant}") as stage:
            times = asyncio.run(_times(stage, sizes, plan.reps))
        (n_small, t_small), (n_large, t_large) = sorted(times.items())[:2]
        per_post_ms = (t_large - t_small) / (n_large - n_small) * 1000
        if per_post_ms <= 0:
            raise RuntimeError(
                f"calibration failed: {t_small:.3f} s at N={n_small}, "
                f"{t_large:.3f} s at N={n_large}"
            )
        fixed_ms = max(0.0, t_small * 1000 - (n_small - 1) * per_post_ms)
        figures[f"{variant}: calibrated ms per post"] = per_post_ms
        figures[f"{variant}: calibrated fixed ms"] = fixed_ms
        host_ms = LOCAL_STAGE.host_cpu_ms_per_post
        if parallel and LOCAL_STAGE.host_cores:
            n_parallel, t_parallel = max(times.items())
            # Every core busy: the wall time per post, times the cores, is one post's host CPU.
            whole_ms = LOCAL_STAGE.host_cores * (t_parallel * 1000 - fixed_ms) / (n_parallel - 1)
            host_ms = max(0.0, whole_ms - per_post_ms)
            figures[f"{variant}: calibrated host ms per post besides the handler"] = host_ms
        platform = replace(
            LOCAL_STAGE,
            cpu_ms_per_post=per_post_ms,
            host_cpu_ms_per_post=host_ms,
            fixed_ms=fixed_ms,
            post_latency_ms=plan.post_latency_ms,
        )
        with bench_stage(
            _config(variant, plan, plan.post_latency_ms), work_dir / f"validate-{variant}"
        ) as stage:
            measured = asyncio.run(_times(stage, plan.audiences, plan.reps))
        for audience, seconds in measured.items():
            predicted = predict(platform, VARIANTS[variant], audience)
            ratio = safe_ratio(predicted.seconds, seconds)
            rows.append({
                "variant": variant, "N": audience, "measured s": seconds,
                "predicted s": predicted.seconds, "predicted/measured": ratio,
                "bound by": predicted.limit,
            })  # fmt: skip
            target = 1 - TOLERANCE if audience <= VALIDATED_UP_TO else None
            ratios.append(
                Ratio(
                    f"{variant} model accuracy, 1 - |predicted/measured - 1|, N={audience:,}",
                    1 - abs(ratio - 1),
                    target,
                    f"{predicted.seconds:.3f} s predicted, {seconds:.3f} s measured",
                )
            )
    notes = [
        "Calibration: time to last delivery at two N with no injected latency, on its own "
        "stage; its slope is the stage's time per post, its intercept the fixed overhead; for "
        "sharded, a third N that several fan-out functions share gives the host CPU one post "
        "takes besides the handler's (gateway, emulator, clients, contention). "
        f"Validation: {plan.post_latency_ms:.0f} ms injected on every post, another stage.",
        "predicted/measured above 1 means the model is pessimistic; the target is an error "
        f"within ±25 % (accuracy >= 0.75) for N <= {VALIDATED_UP_TO:,}.",
    ]
    parameters: dict[str, Any] = {**asdict(plan), "variants": _variants()}
    return BenchResult(
        NAME, size, parameters, rows, ratios, notes, figures,
        started_at=started, duration_s=time.perf_counter() - began,
    )  # fmt: skip
