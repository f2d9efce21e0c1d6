"""Benchmark 6, variant_faults: baseline vs optimized where the tutorial's flaws bite.

Two local stages side by side (one per variant), N real clients each, sends
alternating between the variants. Three experiments, each its own pair of stages:

* **loss at 2 % transient post failures** (``Faults(post_failure_rate=0.02)``: a
  500 from @connections), once with the SDK's retries at their defaults and once
  with them off (``AWS_MAX_ATTEMPTS=1`` in every function's environment, which
  boto3 honours); rounds of broadcasts, lost = expected − delivered;
* **an audience larger than one 1 MB scan page**: every connection item is padded
  until the table holds about two pages (moto's 1,000,000-byte page), standing
  in for an audience of tens of thousands of real 62-byte items; reach =
  delivered / recipients;
* **stale ids**: 20 % of the clients vanish without ``$disconnect``
  (``Faults(lost_disconnect_rate=1.0)``), then 10 broadcasts: posts to stale ids
  (the stage's 410 answers) per broadcast, the stale ids still in the table, and
  the Lambda time they add. The stage runs with a 3 s integration timeout and
  the optimized handler with a 4 s handshake grace, so an id older than 4 s is
  past any handshake (on AWS: 29 s + 1 s).

Cost per million messages is the Lambda part (request + GB-seconds at the
template's 1,024 MB, arm64 list price from ``reports.prices``) of the measured
invocations: the API Gateway messages and DynamoDB reads are the same for both
variants and are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3

from bench.fleet import Fleet
from bench.handler_fanout import MEMORY_GB, lambda_usd_per_million
from bench.itemsize import item_size
from bench.record import BenchResult, Ratio, Scalar, Size, median, now_utc, safe_ratio
from bench.stagetools import BenchStage, bench_stage, raise_open_files
from loadtest.stage.config import StageConfig
from loadtest.stage.dynamodb import LOCAL_CREDENTIALS
from loadtest.stage.faults import Faults
from reports.prices import Prices, Usage, priced

NAME = "variant_faults"
VARIANTS = ("baseline", "optimized")
FAILURE_RATE = 0.02
VANISH_SHARE = 0.2
MOTO_PAGE_BYTES = 1_000_000
"""moto ends a scan page once the items it evaluated reach 1,000,000 bytes."""
TABLE_PAGES = 2.0
INTEGRATION_TIMEOUT_S = 3.0
HANDSHAKE_GRACE_S = 4.0
SEND_TIMEOUT_S = 30.0
SETTLE_S = 0.2


@dataclass(frozen=True)
class Plan:
    audience: int
    loss_rounds: int = 3
    broadcasts_per_round: int = 10
    page_sends: int = 3
    stale_broadcasts: int = 10
    provisioned: int = 2
    concurrency: int = 8


PLANS: dict[str, Plan] = {
    "smoke": Plan(audience=20, loss_rounds=1, broadcasts_per_round=3, page_sends=1,
                  stale_broadcasts=3),
    "default": Plan(audience=100),
    "full": Plan(audience=300, loss_rounds=5),
}  # fmt: skip


@dataclass
class Send:
    variant: str
    recipients: int
    delivered: int
    duplicates: int
    lambda_ms: float
    gone: int
    """Posts the stage answered 410 during this send."""


def _gone(stage: BenchStage) -> int:
    return int(stage.stats()["gateway"].get("api_post_410", 0))


async def _send(stage: BenchStage, fleet: Fleet, variant: str, token: str) -> Send:
    """A send expected to reach everyone: wait for every frame (bounded)."""
    return await _timed_send(stage, fleet, variant, token, SEND_TIMEOUT_S)


async def _lossy_send(stage: BenchStage, fleet: Fleet, variant: str, token: str) -> Send:
    """A send that may not reach everyone: wait for the invocation, not for every frame."""
    return await _timed_send(stage, fleet, variant, token, 0.05)


async def _timed_send(
    stage: BenchStage, fleet: Fleet, variant: str, token: str, frames_timeout_s: float
) -> Send:
    invoked = stage.invocations()
    gone_before = _gone(stage)
    watch = await fleet.broadcast(token, frames_timeout_s)
    await asyncio.to_thread(stage.wait_invocations, invoked + 1, SEND_TIMEOUT_S)
    await fleet.settle(watch, SETTLE_S)
    durations = stage.durations_ms()
    return Send(
        variant, watch.expected, watch.delivered, watch.duplicates,
        durations[-1] if durations else math.nan, _gone(stage) - gone_before,
    )  # fmt: skip


def _drop_leftovers(stage: BenchStage) -> int:
    """Delete the items of connections that are not open (a client that gave up mid-handshake).

    Under load a client can time out after ``$connect`` stored its item; with
    ``$disconnect`` lost, that item would be one more stale id than the
    experiment made. @connections GET says which ids are open.
    """
    management = boto3.client(
        "apigatewaymanagementapi", endpoint_url=stage.callback_url,
        region_name=LOCAL_CREDENTIALS["AWS_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    dynamodb = stage.dynamodb()
    dropped = 0
    for connection_id in stage.connection_ids():
        try:
            management.get_connection(ConnectionId=connection_id)
        except management.exceptions.GoneException:
            dynamodb.delete_item(
                TableName=stage.stage.endpoints.table_name,
                Key={"connectionId": {"S": connection_id}},
            )
            dropped += 1
    return dropped


LEFTOVERS: dict[str, int] = {}
"""Items of clients that gave up mid-handshake, dropped before an experiment, by stage."""


@contextlib.asynccontextmanager
async def _fleets(stages: dict[str, BenchStage], audience: int) -> Any:
    async with contextlib.AsyncExitStack() as stack:
        fleets = {v: await stack.enter_async_context(Fleet(stages[v].ws_url)) for v in VARIANTS}
        reports = await asyncio.gather(
            *(fleets[v].grow(audience, 60.0 + audience / 10) for v in VARIANTS)
        )
        for variant, report in zip(VARIANTS, reports, strict=True):
            if report.connected < audience:
                raise RuntimeError(f"{variant}: only {report.connected} of {audience} connected")
            log_dir = str(stages[variant].stage.endpoints.log_dir)
            LEFTOVERS[log_dir] = await asyncio.to_thread(_drop_leftovers, stages[variant])
        for variant in VARIANTS:  # warm-up: module-scope clients, connection pools
            await _lossy_send(stages[variant], fleets[variant], variant, f"warmup-{variant}")
        yield fleets


def _order(rep: int) -> tuple[str, ...]:
    return VARIANTS if rep % 2 == 0 else VARIANTS[::-1]


# --- 1. loss at 2 % transient failures -----------------------------------------------


async def _loss(stages: dict[str, BenchStage], plan: Plan, label: str) -> dict[str, list[int]]:
    """Lost deliveries per round, by variant."""
    lost: dict[str, list[int]] = {v: [] for v in VARIANTS}
    async with _fleets(stages, plan.audience) as fleets:
        for round_index in range(plan.loss_rounds):
            round_lost = dict.fromkeys(VARIANTS, 0)
            for b in range(plan.broadcasts_per_round):
                for variant in _order(b):
                    token = f"loss-{label}-{variant}-{round_index}-{b}-{time.time_ns()}"
                    sent = await _lossy_send(stages[variant], fleets[variant], variant, token)
                    round_lost[variant] += sent.recipients - sent.delivered
            for variant in VARIANTS:
                lost[variant].append(round_lost[variant])
    return lost


def _loss_config(variant: str, plan: Plan, retries_off: bool) -> StageConfig:
    return StageConfig(
        variant=variant, provisioned=plan.provisioned, concurrency=plan.concurrency,
        lambda_environment={"AWS_MAX_ATTEMPTS": "1"} if retries_off else {},
        faults=Faults(post_failure_rate=FAILURE_RATE),
    )  # fmt: skip


# --- 2-3. a table past one scan page; stale ids ----------------------------------------


def _pad_every_item(stage: BenchStage, pad_bytes: int, remove: bool = False) -> int:
    client = stage.dynamodb()
    table = stage.stage.endpoints.table_name
    ids = stage.connection_ids()
    for connection_id in ids:
        key = {"connectionId": {"S": connection_id}}
        if remove:
            client.update_item(
                TableName=table, Key=key, UpdateExpression="REMOVE #pad",
                ExpressionAttributeNames={"#pad": "padding"},
            )  # fmt: skip
        else:
            client.update_item(
                TableName=table, Key=key, UpdateExpression="SET #pad = :pad",
                ExpressionAttributeNames={"#pad": "padding"},
                ExpressionAttributeValues={":pad": {"S": "x" * pad_bytes}},
            )  # fmt: skip
    return len(ids)


@dataclass
class PageAndStale:
    clean: dict[str, list[Send]]
    paged: dict[str, list[Send]]
    stale: dict[str, list[Send]]
    stale_left: dict[str, int]
    stale_at_start: dict[str, int]
    vanished: int
    pad_bytes: int
    table_bytes: dict[str, int]


async def _page_and_stale(stages: dict[str, BenchStage], plan: Plan) -> PageAndStale:
    clean: dict[str, list[Send]] = {v: [] for v in VARIANTS}
    paged: dict[str, list[Send]] = {v: [] for v in VARIANTS}
    stale: dict[str, list[Send]] = {v: [] for v in VARIANTS}
    async with _fleets(stages, plan.audience) as fleets:
        connected_by = time.monotonic()
        for rep in range(plan.page_sends):
            for variant in _order(rep):
                token = f"clean-{variant}-{rep}-{time.time_ns()}"
                clean[variant].append(await _send(stages[variant], fleets[variant], variant, token))
        # Pad every item so the table spans about TABLE_PAGES scan pages.
        pad_bytes = int(TABLE_PAGES * MOTO_PAGE_BYTES / plan.audience)
        for variant in VARIANTS:
            await asyncio.to_thread(_pad_every_item, stages[variant], pad_bytes)
        table_bytes = {
            v: sum(item_size(item, moto=True) for item in stages[v].table_items()) for v in VARIANTS
        }
        for rep in range(plan.page_sends):
            for variant in _order(rep):
                token = f"paged-{variant}-{rep}-{time.time_ns()}"
                paged[variant].append(
                    await _lossy_send(stages[variant], fleets[variant], variant, token)
                )
        for variant in VARIANTS:
            await asyncio.to_thread(_pad_every_item, stages[variant], 0, True)
        # 20 % vanish; their $disconnect is lost, so their ids stay behind.
        vanished = max(1, int(plan.audience * VANISH_SHARE))
        for variant in VARIANTS:
            await fleets[variant].vanish(vanished)
        for variant in VARIANTS:
            lost_by = time.monotonic() + 15
            while time.monotonic() < lost_by:
                stats = stages[variant].stats()["gateway"]
                if int(stats.get("disconnects_lost", 0)) >= vanished:
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, connected_by + HANDSHAKE_GRACE_S + 0.5 - time.monotonic()))
        stale_at_start = {
            v: len(stages[v].connection_ids()) - len(fleets[v].clients) for v in VARIANTS
        }
        for rep in range(plan.stale_broadcasts):
            for variant in _order(rep):
                token = f"stale-{variant}-{rep}-{time.time_ns()}"
                stale[variant].append(await _send(stages[variant], fleets[variant], variant, token))
        live = {v: len(fleets[v].clients) for v in VARIANTS}
        stale_left = {
            v: len(stages[v].connection_ids()) - live[v] for v in VARIANTS
        }  # fmt: skip
    return PageAndStale(
        clean, paged, stale, stale_left, stale_at_start, vanished, pad_bytes, table_bytes
    )


def _stale_config(variant: str, plan: Plan) -> StageConfig:
    return StageConfig(
        variant=variant, provisioned=plan.provisioned, concurrency=plan.concurrency,
        integration_timeout_s=INTEGRATION_TIMEOUT_S,
        lambda_environment={"HANDSHAKE_GRACE_MS": str(int(HANDSHAKE_GRACE_S * 1000))},
        faults=Faults(lost_disconnect_rate=1.0),
    )  # fmt: skip


# --- the run ---------------------------------------------------------------------------


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    prices = Prices()
    LEFTOVERS.clear()
    started, began = now_utc(), time.perf_counter()
    raise_open_files(4 * plan.audience + 2048)
    rows: list[dict[str, Scalar]] = []
    ratios: list[Ratio] = []
    expected_per_round = plan.broadcasts_per_round * (plan.audience - 1)
    for retries_off in (False, True):
        label = "off (AWS_MAX_ATTEMPTS=1)" if retries_off else "SDK defaults"
        with contextlib.ExitStack() as stack:
            stages = {
                v: stack.enter_context(
                    bench_stage(
                        _loss_config(v, plan, retries_off),
                        work_dir / f"loss-{'off' if retries_off else 'default'}-{v}",
                    )
                )
                for v in VARIANTS
            }
            lost = asyncio.run(_loss(stages, plan, "off" if retries_off else "default"))
        for variant in VARIANTS:
            rows.append({
                "experiment": f"2 % post failures, SDK retries {label}",
                "variant": variant,
                "lost per round (median)": median(lost[variant]),
                "lost in all": sum(lost[variant]),
                "expected in all": expected_per_round * plan.loss_rounds,
                "loss %": 100 * sum(lost[variant]) / (expected_per_round * plan.loss_rounds),
            })  # fmt: skip
        expected = expected_per_round * plan.loss_rounds
        ratios.append(Ratio(
            f"optimized/baseline deliveries, 2 % post failures, SDK retries {label}",
            safe_ratio(expected - sum(lost["optimized"]), expected - sum(lost["baseline"])), None,
            f"lost {sum(lost['optimized'])} / {sum(lost['baseline'])} of "
            f"{expected_per_round * plan.loss_rounds:,} each, {plan.loss_rounds} rounds of "
            f"{plan.broadcasts_per_round} broadcasts to {plan.audience - 1}",
        ))  # fmt: skip

    with contextlib.ExitStack() as stack:
        stages = {
            v: stack.enter_context(bench_stage(_stale_config(v, plan), work_dir / f"stale-{v}"))
            for v in VARIANTS
        }
        seen = asyncio.run(_page_and_stale(stages, plan))

    reach = {
        v: median(s.delivered / s.recipients for s in seen.paged[v] if s.recipients)
        for v in VARIANTS
    }
    for variant in VARIANTS:
        rows.append({
            "experiment": f"audience past one scan page, table of ≈ {TABLE_PAGES:g} pages",
            "table MB (moto rule)": seen.table_bytes[variant] / 1e6,
            "variant": variant,
            "reach %": 100 * reach[variant],
            "delivered (median)": median(s.delivered for s in seen.paged[variant]),
            "recipients": seen.paged[variant][0].recipients,
        })  # fmt: skip
    ratios.append(Ratio(
        "optimized / baseline reach, audience past one 1 MB scan page",
        safe_ratio(reach["optimized"], reach["baseline"]), None,
        f"{100 * reach['optimized']:.0f} % / {100 * reach['baseline']:.0f} % of "
        f"{plan.audience - 1} recipients, median of {plan.page_sends}",
    ))  # fmt: skip

    stale_posts = {v: sum(s.gone for s in seen.stale[v]) for v in VARIANTS}
    for variant in VARIANTS:
        sends = seen.stale[variant]
        clean_ms = median(s.lambda_ms for s in seen.clean[variant])
        stale_ms = median(s.lambda_ms for s in sends)
        posts = median(s.recipients + s.gone for s in sends)
        ms_per_post = safe_ratio(stale_ms, posts)
        per_message = stale_posts[variant] / len(sends)
        stale_gb_s_per_million = 1e6 * per_message * ms_per_post / 1000 * MEMORY_GB
        rows.append({
            "experiment": f"{seen.vanished} of {plan.audience} vanished without $disconnect, "
                          f"next {len(sends)} broadcasts",
            "variant": variant,
            "stale ids at start": seen.stale_at_start[variant],
            "posts to stale ids": stale_posts[variant],
            "on the first broadcast": sends[0].gone,
            "on the last broadcast": sends[-1].gone,
            "stale ids left in table": seen.stale_left[variant],
            "delivered to live": min(s.delivered == s.recipients for s in sends),
            "Lambda ms (clean)": clean_ms,
            "Lambda ms (stale)": stale_ms,
            "Lambda $/M msgs (clean)": lambda_usd_per_million(clean_ms, prices),
            "Lambda $/M msgs (stale)": lambda_usd_per_million(stale_ms, prices),
            "stale posts add $/M msgs": (
                priced(Usage(sendmessage_gb_seconds=stale_gb_s_per_million), prices)[
                    "sendmessage_compute"
                ]
            ),
        })  # fmt: skip
    ratios.append(Ratio(
        f"baseline / optimized posts to stale ids over {plan.stale_broadcasts} broadcasts",
        safe_ratio(stale_posts["baseline"], stale_posts["optimized"]), None,
        f"{stale_posts['baseline']} / {stale_posts['optimized']} posts, {seen.vanished} "
        f"stale ids of {plan.audience}",
    ))  # fmt: skip
    notes = [
        f"Loss: {FAILURE_RATE:.0%} of @connections POSTs answer 500; botocore's default "
        "(standard mode) makes 3 attempts, so the baseline's SDK-default loss is "
        f"≈ {FAILURE_RATE**3:.0e} per post; the optimized handler retries itself "
        "(POST_MAX_ATTEMPTS 5) whatever AWS_MAX_ATTEMPTS says.",
        f"Scan page: every item padded to ≈ {seen.pad_bytes:,} B so {plan.audience} items "
        f"weigh ≈ {seen.table_bytes['optimized'] / 1e6:.2f} MB by moto's size rule; on "
        f"DynamoDB an audience that large is ≈ {int(seen.table_bytes['optimized'] / 62):,} "
        "real 62-byte items.",
        "Items of clients that gave up mid-handshake under load (their $connect stored an "
        "item) are deleted before each experiment, found by @connections GET answering 410: "
        f"{sum(LEFTOVERS.values())} in this run.",
        f"Stale: the stage's integration timeout is {INTEGRATION_TIMEOUT_S:g} s and the "
        f"optimized handler's HANDSHAKE_GRACE_MS {HANDSHAKE_GRACE_S * 1000:.0f}; broadcasts "
        "start once the vanished ids are older than that. 'stale posts add' = stale posts per "
        "message × the measured Lambda ms per post × 1 GB × the arm64 GB-s price.",
    ]
    parameters: dict[str, Any] = {
        **asdict(plan), "variants": list(VARIANTS), "failure_rate": FAILURE_RATE,
        "vanish_share": VANISH_SHARE, "table_pages": TABLE_PAGES,
        "integration_timeout_s": INTEGRATION_TIMEOUT_S, "handshake_grace_s": HANDSHAKE_GRACE_S,
        "lambda_per_gb_second": prices.lambda_per_gb_second,
        "lambda_per_million_requests": prices.lambda_per_million_requests,
    }  # fmt: skip
    return BenchResult(
        NAME, size, parameters, rows, ratios, notes, {},
        started_at=started, duration_s=time.perf_counter() - began,
    )  # fmt: skip
