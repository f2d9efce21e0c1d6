"""Benchmark 2, post_ceiling: raw @connections POST throughput vs the optimized handler's.

Against one local stage (no injected latency) with K receivers in a separate
process (``bench.swarm``), this process posts M messages round-robin to the K
connection ids by four paths — boto3 on one thread, boto3 on T threads sharing
one client, SigV4 + urllib3 on one thread and on T threads — timing wall clock
and ``time.process_time()`` (CPU of this process, every thread). Between them,
one ``sendmessage`` to the same K receivers measures the optimized handler:
posts / ``FanoutMs`` from its EMF line, and the Lambda worker's CPU per post.
Paths are interleaved, repeated, and the median kept.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.posting import Boto3Poster, Poster, PostRun, SignedPoster, post_many
from bench.procs import STAGE
from bench.record import BenchResult, Ratio, Scalar, Size, median, now_utc, safe_ratio
from bench.stagetools import BenchStage, bench_stage, raise_open_files
from bench.swarm import Swarm
from fanbench_common.resources import SEND_FUNCTION
from loadtest.stage.config import StageConfig

NAME = "post_ceiling"
HANDLER = "optimized handler (sendmessage)"
TARGET = 0.70
DELIVERY_WAIT_S = 20.0


@dataclass(frozen=True)
class Plan:
    receivers: int
    posts: int
    """Posts per path per repetition."""
    threads: int = 32
    """As the optimized handler's POST_CONCURRENCY default."""
    reps: int = 3
    message_bytes: int = 64


PLANS: dict[str, Plan] = {
    "smoke": Plan(receivers=8, posts=64, threads=4, reps=1),
    "default": Plan(receivers=400, posts=1200),
    "full": Plan(receivers=1000, posts=3000, reps=5),
}


@dataclass
class Measure:
    path: str
    posts: int
    seconds: float
    client_cpu_s: float
    """This process (raw paths) or the Lambda worker (the handler)."""
    stage_cpu_s: float
    delivered: int
    frames_arrived: bool

    @property
    def per_second(self) -> float:
        return self.posts / self.seconds if self.seconds > 0 else math.nan


def _wait_frames(swarm: Swarm, at_least: int) -> tuple[int, bool]:
    deadline = time.monotonic() + DELIVERY_WAIT_S
    frames = swarm.frames()
    for _ in range(int(DELIVERY_WAIT_S / 0.02) + 2):
        if frames >= at_least or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
        frames = swarm.frames()
    return frames, frames >= at_least


def _raw(
    stage: BenchStage, swarm: Swarm, path: str, poster: Poster, ids: list[str], threads: int,
    data: bytes,
) -> Measure:  # fmt: skip
    frames_before = swarm.frames()
    cpu_before = stage.processes.sample()
    run: PostRun = post_many(poster, ids, data, threads)
    stage_cpu = stage.processes.sample().minus(cpu_before).get(STAGE, 0.0)
    _, arrived = _wait_frames(swarm, frames_before + run.outcomes.get("delivered", 0))
    return Measure(path, run.posts, run.seconds, run.cpu_s, stage_cpu,
                   run.outcomes.get("delivered", 0), arrived)  # fmt: skip


def _handler(stage: BenchStage, swarm: Swarm, token: str) -> Measure:
    frames_before = swarm.frames()
    invoked, emf_before = stage.invocations(), len(stage.emf_records())
    cpu_before = stage.processes.sample()
    swarm.send(token)
    stage.wait_invocations(invoked + 1, 60.0)
    cpu = stage.processes.sample().minus(cpu_before)
    records = stage.wait_emf(emf_before + 1, 5.0)
    emf = records[-1] if len(records) > emf_before else {}
    delivered = int(emf.get("Delivered", 0))
    _, arrived = _wait_frames(swarm, frames_before + delivered)
    return Measure(HANDLER, int(emf.get("Recipients", 0)),
                   float(emf.get("FanoutMs", math.nan)) / 1000,
                   stage.processes.lambda_cpu(cpu, SEND_FUNCTION), cpu.get(STAGE, 0.0),
                   delivered, arrived)  # fmt: skip


def _row(path: str, measures: list[Measure]) -> dict[str, Scalar]:
    return {
        "path": path,
        "posts/s": median(m.per_second for m in measures),
        "min posts/s": min(m.per_second for m in measures),
        "max posts/s": max(m.per_second for m in measures),
        "client CPU ms/post": median(m.client_cpu_s * 1000 / m.posts for m in measures if m.posts),
        "stage CPU ms/post": median(m.stage_cpu_s * 1000 / m.posts for m in measures if m.posts),
        "posts": sum(m.posts for m in measures),
        "delivered": sum(m.delivered for m in measures),
        "all frames arrived": all(m.frames_arrived for m in measures),
    }


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    started, began = now_utc(), time.perf_counter()
    raise_open_files(plan.receivers * 2 + 2048)
    config = StageConfig(variant="optimized", provisioned=2)
    measures: list[Measure] = []
    with (
        bench_stage(config, work_dir / "stage") as stage,
        Swarm(stage.ws_url, plan.receivers) as swarm,
    ):
        ids = stage.connection_ids()
        targets = [ids[i % len(ids)] for i in range(plan.posts)]
        data = b"p" * plan.message_bytes
        posters: dict[str, tuple[Poster, int]] = {
            "boto3, 1 thread": (Boto3Poster(stage.callback_url), 1),
            f"boto3, {plan.threads} threads, shared client": (
                Boto3Poster(stage.callback_url, plan.threads), plan.threads),
            "SigV4 + urllib3, 1 thread": (SignedPoster(stage.callback_url), 1),
            f"SigV4 + urllib3, {plan.threads} threads": (
                SignedPoster(stage.callback_url, plan.threads), plan.threads),
        }  # fmt: skip
        for path, (poster, threads) in posters.items():  # warm-up: pools, first-call costs
            _raw(stage, swarm, path, poster, targets[: max(threads * 2, 16)], threads, data)
        _handler(stage, swarm, "warmup".ljust(plan.message_bytes, "."))
        names = [*posters, HANDLER]
        for rep in range(plan.reps):
            shift = rep % len(names)
            for path in names[shift:] + names[:shift]:
                if path == HANDLER:
                    token = f"ceiling-{rep}-".ljust(plan.message_bytes, ".")
                    measures.append(_handler(stage, swarm, token))
                else:
                    poster, threads = posters[path]
                    measures.append(_raw(stage, swarm, path, poster, targets, threads, data))
    rows = [_row(path, [m for m in measures if m.path == path]) for path in names]
    rate = {str(row["path"]): float(row["posts/s"] or math.nan) for row in rows}
    cpu = {str(row["path"]): float(row["client CPU ms/post"] or math.nan) for row in rows}
    boto_one, boto_many, signed_one, signed_many = list(posters)
    ratios = [
        Ratio("optimized handler / boto3 ceiling (T threads)",
              safe_ratio(rate[HANDLER], rate[boto_many]), TARGET,
              f"{rate[HANDLER]:.0f} / {rate[boto_many]:.0f} posts/s"),
        Ratio("optimized handler / boto3 one thread",
              safe_ratio(rate[HANDLER], rate[boto_one]), None,
              f"{rate[HANDLER]:.0f} / {rate[boto_one]:.0f} posts/s"),
        Ratio("SigV4+urllib3 / boto3 posts/s, one thread",
              safe_ratio(rate[signed_one], rate[boto_one]), None,
              f"{rate[signed_one]:.0f} / {rate[boto_one]:.0f} posts/s"),
        Ratio("SigV4+urllib3 / boto3 posts/s, T threads",
              safe_ratio(rate[signed_many], rate[boto_many]), None,
              f"{rate[signed_many]:.0f} / {rate[boto_many]:.0f} posts/s"),
        Ratio("boto3 / SigV4+urllib3 CPU ms per post, one thread",
              safe_ratio(cpu[boto_one], cpu[signed_one]), None,
              f"{cpu[boto_one]:.2f} / {cpu[signed_one]:.2f} ms"),
    ]  # fmt: skip
    notes = [
        "Raw paths: client CPU is time.process_time() of the benchmark process; the handler's "
        "is the SendMessageFunction worker's CPU over the whole invocation (scan included). "
        "Receivers run in a separate process; all processes share the same 2 cores.",
        "The handler's posts/s is Recipients / FanoutMs from its EMF line (the post phase only).",
        "A SigV4+urllib3 path gets no error modelling: it must map 410 → gone (and delete the "
        "id), 429 → retry, itself; boto3 raises GoneException from x-amzn-ErrorType.",
    ]
    handler_cpu = cpu[HANDLER]
    swapped = handler_cpu - cpu[boto_one] + cpu[signed_one]
    figures: dict[str, Scalar] = {
        "handler Lambda CPU ms/post (boto3)": handler_cpu,
        "handler CPU-bound ceiling, posts/s per core (boto3)": safe_ratio(1000, handler_cpu),
        "same with SigV4+urllib3 (estimate: handler − boto3 + signed CPU/post)": safe_ratio(
            1000, swapped
        ),
    }
    parameters: dict[str, Any] = {**asdict(plan), "variant": "optimized", "post_latency_ms": 0}
    return BenchResult(
        NAME, size, parameters, rows, ratios, notes, figures,
        started_at=started, duration_s=time.perf_counter() - began,
    )  # fmt: skip
