"""Benchmark 3, cost_curve: the optimized handler's fan-out time and scan work vs audience size.

One stage (optimized, no injected latency), clients of this process added in
steps; at each audience size, one warm sendmessage three times. From the
handler's EMF line: FanoutMs, ScanMs, ScanPages, ItemsScanned; from the
clients: time to the last delivery. A least-squares line through the median
FanoutMs vs recipients gives the marginal cost per recipient (slope) and how
linear it is (r²).

Then the 1 MB scan page: where it falls for these items, and, by putting a few
padded dummy items straight into the table (boto3 ``put_item``), one send that
needs two pages — whose dummy ids the handler finds gone (410) and deletes.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.fleet import Fleet
from bench.itemsize import MOTO_PAGE_BYTES, item_size, items_per_page
from bench.record import BenchResult, Ratio, Scalar, Size, median, now_utc, safe_ratio
from bench.stagetools import BenchStage, bench_stage, raise_open_files
from loadtest.stage.config import StageConfig
from loadtest.stage.events import new_id
from loadtest.stage.faults import Faults

NAME = "cost_curve"
PADDED = "padded past 1 MB"
CLEANED = "after stale cleanup"
PAD_ITEM_BYTES = 300_000
"""Under DynamoDB's (and moto's) 400 KB item limit; four of these cross a 1 MB page."""


@dataclass(frozen=True)
class Plan:
    audiences: tuple[int, ...]
    reps: int = 3
    post_latency_ms: float = 0.0
    provisioned: int = 2


PLANS: dict[str, Plan] = {
    "smoke": Plan(audiences=(6, 12, 24), reps=1),
    "default": Plan(audiences=(50, 100, 200, 400, 800)),
    "full": Plan(audiences=(50, 100, 200, 400, 800, 1600, 3200)),
}


@dataclass
class Send:
    label: str
    audience: int
    recipients: int
    delivered: int
    to_last_ms: float
    fanout_ms: float
    scan_ms: float
    scan_pages: int
    items_scanned: int
    gone: int
    stale_removed: int


async def _send(stage: BenchStage, fleet: Fleet, label: str, token: str) -> Send:
    invoked, emf_before = stage.invocations(), len(stage.emf_records())
    watch = await fleet.broadcast(token, 60.0 + len(fleet.clients) / 50)
    await asyncio.to_thread(stage.wait_invocations, invoked + 1, 30.0)
    records = await asyncio.to_thread(stage.wait_emf, emf_before + 1, 5.0)
    await fleet.settle(watch, 0.02)
    emf: dict[str, Any] = records[-1] if len(records) > emf_before else {}
    return Send(
        label=label, audience=len(fleet.clients), recipients=watch.expected,
        delivered=watch.delivered, to_last_ms=watch.to_last_s * 1000,
        fanout_ms=float(emf.get("FanoutMs", math.nan)), scan_ms=float(emf.get("ScanMs", math.nan)),
        scan_pages=int(emf.get("ScanPages", 0)), items_scanned=int(emf.get("ItemsScanned", 0)),
        gone=int(emf.get("Gone", 0)), stale_removed=int(emf.get("StaleRemoved", 0)),
    )  # fmt: skip


STALE_AGE_MS = 3_600_000


def pad_items(stage: BenchStage, count: int, pad_bytes: int = PAD_ITEM_BYTES) -> list[str]:
    """Put ``count`` dummy connection items of ~``pad_bytes`` each; their ids are never open.

    They stand for connections that left an hour ago without ``$disconnect``: old
    enough that the optimized handler takes their 410 as stale, not as a handshake.
    """
    client = stage.dynamodb()
    ids = [new_id() for _ in range(count)]
    now_ms = int(time.time() * 1000)
    left_ms = now_ms - STALE_AGE_MS
    for connection_id in ids:
        client.put_item(
            TableName=stage.stage.endpoints.table_name,
            Item={
                "connectionId": {"S": connection_id},
                "connectedAt": {"N": str(left_ms)},
                "expiresAt": {"N": str(now_ms // 1000 + 8 * 3600)},
                "pad": {"S": "x" * pad_bytes},
            },
        )
    return ids


async def _measure(stage: BenchStage, plan: Plan) -> tuple[list[Send], list[Send], int]:
    curve: list[Send] = []
    async with Fleet(stage.ws_url) as fleet:
        await fleet.grow(plan.audiences[0], 120.0)
        await _send(stage, fleet, "warm-up", f"curve-warmup-{time.time_ns()}")
        for audience in plan.audiences:
            await fleet.grow(audience, 60.0 + audience / 20)
            for rep in range(plan.reps):
                token = f"curve-{audience}-{rep}-{time.time_ns()}"
                curve.append(await _send(stage, fleet, f"N={audience}", token))
        table_bytes = sum(item_size(i, moto=True) for i in stage.table_items())
        pads = max(1, math.ceil((MOTO_PAGE_BYTES - table_bytes) / PAD_ITEM_BYTES) + 1)
        boundary: list[Send] = []
        for rep in range(plan.reps):  # the handler deletes the padding (410) at each send
            await asyncio.to_thread(pad_items, stage, pads)
            boundary.append(await _send(stage, fleet, PADDED, f"curve-pad-{rep}-{time.time_ns()}"))
            boundary.append(await _send(stage, fleet, CLEANED, f"curve-cln-{rep}-{time.time_ns()}"))
    return curve, boundary, pads


def linear_fit(x: list[float], y: list[float]) -> tuple[float, float, float]:
    """Least squares y = slope·x + intercept; returns (slope, intercept, r²)."""
    if len(x) < 2:
        return math.nan, math.nan, math.nan
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    predicted = slope * np.asarray(x) + intercept
    residual = float(np.sum((np.asarray(y) - predicted) ** 2))
    total = float(np.sum((np.asarray(y) - np.mean(y)) ** 2))
    return float(slope), float(intercept), 1.0 - residual / total if total > 0 else math.nan


def _row(sends: list[Send]) -> dict[str, Scalar]:
    first = sends[0]
    return {
        "send": first.label,
        "N": first.audience,
        "recipients": first.recipients,
        "FanoutMs": median(s.fanout_ms for s in sends),
        "ScanMs": median(s.scan_ms for s in sends),
        "to last delivery ms": median(s.to_last_ms for s in sends),
        "ms/recipient": median(s.fanout_ms / s.recipients for s in sends if s.recipients),
        "ScanPages": max(s.scan_pages for s in sends),
        "ItemsScanned": max(s.items_scanned for s in sends),
        "Gone": sum(s.gone for s in sends),
        "StaleRemoved": sum(s.stale_removed for s in sends),
        "delivered": min(s.delivered for s in sends),
    }


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    started, began = now_utc(), time.perf_counter()
    raise_open_files(max(plan.audiences) * 2 + 2048)
    config = StageConfig(
        variant="optimized", provisioned=plan.provisioned,
        faults=Faults(post_latency_ms=plan.post_latency_ms),
        dynamodb_emulator="moto",  # the page arithmetic here follows moto's size rule
    )  # fmt: skip
    with bench_stage(config, work_dir / "stage") as stage:
        curve, boundary, pads = asyncio.run(_measure(stage, plan))
        items = [i for i in stage.table_items() if "pad" not in i]
    per_size = [[s for s in curve if s.label == f"N={a}"] for a in plan.audiences]
    padded_sends = [s for s in boundary if s.label == PADDED]
    cleaned_sends = [s for s in boundary if s.label == CLEANED]
    rows = [_row(sends) for sends in [*per_size, padded_sends, cleaned_sends] if sends]
    recipients = [float(sends[0].recipients) for sends in per_size if sends]
    fanout = [median(s.fanout_ms for s in sends) for sends in per_size if sends]
    to_last = [median(s.to_last_ms for s in sends) for sends in per_size if sends]
    scan = [median(s.scan_ms for s in sends) for sends in per_size if sends]
    slope, intercept, r2 = linear_fit(recipients, fanout)
    last_slope, last_intercept, last_r2 = linear_fit(recipients, to_last)
    scan_slope, _, scan_r2 = linear_fit(recipients, scan)
    moto_bytes = max((item_size(i, moto=True) for i in items), default=0)
    aws_bytes = max((item_size(i) for i in items), default=0)
    figures: dict[str, Scalar] = {
        "FanoutMs slope, ms/recipient": slope,
        "FanoutMs intercept, ms": intercept,
        "FanoutMs fit r²": r2,
        "time-to-last slope, ms/recipient": last_slope,
        "time-to-last intercept, ms": last_intercept,
        "time-to-last fit r²": last_r2,
        "ScanMs slope, ms/item": scan_slope,
        "ScanMs fit r²": scan_r2,
        "connection item bytes (moto rule)": moto_bytes,
        "connection item bytes (DynamoDB rule)": aws_bytes,
        "items per 1 MB page (moto)": items_per_page(moto_bytes, moto=True) if items else None,
        "items per 1 MB page (DynamoDB)": items_per_page(aws_bytes) if items else None,
        "padded dummy items put per send": pads,
    }
    padded_scan = median(s.scan_ms for s in padded_sends)
    cleaned_scan = median(s.scan_ms for s in cleaned_sends)
    ratios = [
        Ratio("FanoutMs growth / audience growth (largest vs smallest N)",
              safe_ratio(fanout[-1] / fanout[0], recipients[-1] / recipients[0]), None,
              f"{fanout[-1]:.0f}/{fanout[0]:.1f} ms over {recipients[-1]:.0f}/{recipients[0]:.0f}"
              " recipients; 1 = linear with no fixed cost"),
        Ratio("ScanMs padded past 1 MB / after cleanup (same audience)",
              safe_ratio(padded_scan, cleaned_scan), None,
              f"{padded_scan:.1f} / {cleaned_scan:.1f} ms, pages "
              f"{max(s.scan_pages for s in padded_sends)} / "
              f"{max(s.scan_pages for s in cleaned_sends)}, median of {plan.reps}"),
    ]  # fmt: skip
    notes = [
        "FanoutMs and ScanMs are the handler's own EMF figures (post phase; audience read); "
        "time to last delivery is measured by the receiving clients from the send.",
        f"Padding: {pads} dummy items of {PAD_ITEM_BYTES:,} B put directly into the table "
        "take the scan past moto's 1,000,000-byte page; the handler pages on (ScanPages 2), "
        "every real client still receives, and the dummy ids answer 410 and are deleted.",
    ]
    parameters: dict[str, Any] = {**asdict(plan), "variant": "optimized"}
    return BenchResult(
        NAME, size, parameters, rows, ratios, notes, figures,
        started_at=started, duration_s=time.perf_counter() - began,
    )  # fmt: skip
