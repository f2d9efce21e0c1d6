"""The capacity model: time to last delivery and cost of one broadcast, by room size and variant.

Pure arithmetic over stated assumptions (``Platform``) and each variant's shape
(``VariantShape``); ``fanbench plan`` prints it, and ``bench/capacity_check.py``
holds it against the local stage's measured times.

One broadcast to an audience of N (N - 1 recipients) takes:

* **scan**: ``pages x scan_page_ms`` plus ``N x scan_ms_per_item`` of CPU
  (a variant that does not paginate reads one 1 MB page and reaches only the
  recipients on it);
* **posting** at the slower of two limits per function: in-flight posts over
  their round trip (``post_concurrency / (post_latency + CPU per post)``) and
  CPU (``effective cores / CPU per post``), where a function's effective
  cores are ``min(1, memory / 1,769 MB)`` (Lambda gives one vCPU per 1,769 MB;
  the GIL keeps boto3's threads on one of them, and Node.js runs JavaScript on
  one thread); on a shared host, also by the host's cores over the CPU each
  post costs there (handler plus stage);
* **the tutorial's own app** (Node.js, SDK v3) is its own shape: its template's
  256 MB and 10 s, its own CPU per post, and a CPU cost per invocation for the
  management client and TLS connections it builds anew every time;
* **the account's callback quota**: every PostToConnection draws on a token
  bucket (10,000 requests/s, burst 5,000 on AWS); a fan-out faster than the
  rate empties the burst and then runs at the rate;
* **sharded**: the dispatcher scans, then invokes one fan-out function per
  shard (``invoke_ms`` each, over ``invoke_threads``), each starting after
  ``async_start_ms``; at most ``concurrency`` shards run at once, and a
  function scales out by ``scale_per_10s`` new environments every 10 s;
* **timeout**: a single function stops at ``function_timeout_s``; what it had
  not posted by then is never delivered (``reached`` says how many were).

Cost per broadcast: API Gateway messages (one in, one per recipient reached,
metered per 32 KB), Lambda requests and GB-seconds for every function that ran,
and the scan's read request units (eventually consistent: half a unit per 4 KB).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TypeVar

from fanbench_common.limits import (
    ACCOUNT_THROTTLE_BURST,
    ACCOUNT_THROTTLE_RPS,
    INTEGRATION_TIMEOUT_S,
    KIB,
    LAMBDA_DEFAULT_CONCURRENCY,
    METERING_INCREMENT_BYTES,
    SCAN_PAGE_BYTES,
)
from fanbench_common.variants import Variant
from reports.prices import Prices, Usage, priced

MB_PER_VCPU = 1769
"""Lambda allocates CPU in proportion to memory: 1,769 MB is one vCPU (Lambda docs, memory)."""
_Figure = TypeVar("_Figure", int, float)
READ_UNIT_BYTES = 4 * KIB
EVENTUALLY_CONSISTENT_READ_UNITS = 0.5
LAMBDA_SCALE_WINDOW_S = 10.0
ROOM_SIZES = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)


@dataclass(frozen=True)
class Platform:
    """Where the handlers run: every figure the model uses, with where it comes from."""

    name: str
    cpu_ms_per_post: float
    """Handler CPU per PostToConnection on one full core (boto3 path)."""
    scan_ms_per_item: float
    """Scan time per item beyond the per-page latency: the client's parsing CPU on AWS; on the
    stage, the emulator's serving time as well."""
    post_latency_ms: float
    """Round trip of one PostToConnection."""
    scan_page_ms: float
    """Latency of one Scan request, beyond its CPU."""
    item_bytes: int
    """One connection item as DynamoDB sizes it."""
    memory_mb: int = 1024
    invoke_ms: float = 15.0
    """One asynchronous Invoke API call, as the dispatcher waits for it."""
    async_start_ms: float = 100.0
    """From an accepted asynchronous Invoke to the handler running."""
    concurrency: int = LAMBDA_DEFAULT_CONCURRENCY
    scale_per_10s: int = 1000
    callback_rps: float | None = ACCOUNT_THROTTLE_RPS
    """The account's request rate that callbacks draw on; None: unlimited."""
    callback_burst: float = ACCOUNT_THROTTLE_BURST
    function_timeout_s: float = INTEGRATION_TIMEOUT_S
    fanout_timeout_s: float = 60.0
    invoke_threads: int = 16
    host_cores: float | None = None
    """Cores every function shares (a laptop's stage); None: each environment has its own."""
    host_cpu_ms_per_post: float = 0.0
    """CPU a post costs the host besides the handler (the stage's gateway); 0 on AWS."""
    fixed_ms: float = 0.0
    """Per-invocation overhead: reading the sender's item, the first connections."""
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def effective_cores(self) -> float:
        return self.cores_at(self.memory_mb)

    def cores_at(self, memory_mb: int) -> float:
        """The CPU share a function of ``memory_mb`` gets: a full core on a shared host (the
        stage does not divide it by memory), Lambda's share by memory on AWS."""
        if self.host_cores is not None:
            return 1.0
        return min(1.0, memory_mb / MB_PER_VCPU)

    @property
    def items_per_page(self) -> int:
        return max(1, SCAN_PAGE_BYTES // self.item_bytes)


@dataclass(frozen=True)
class VariantShape:
    name: str
    post_concurrency: int
    """Posts in flight in one function."""
    paginates: bool
    shard_size: int | None = None
    """Recipients per fan-out invocation; None posts everything from sendmessage."""
    scan_segments: int = 1
    cpu_ms_per_post: float | None = None
    """CPU per post on one full core, where it is not the platform's Python handlers'."""
    invocation_cpu_ms: float = 0.0
    """CPU every invocation spends before its posts scale with N (clients, TLS handshakes)."""
    memory_mb: int | None = None
    """Its own template's MemorySize; None: the platform's."""
    timeout_s: float | None = None
    """Its own template's Timeout; None: the platform's."""
    item_bytes: int | None = None
    """Its own connection item's size; None: the platform's (fanbench's items)."""
    sources: tuple[tuple[str, str], ...] = ()
    """Where each of its own figures comes from."""

    def function(self, platform: Platform) -> Platform:
        """The platform as this variant's sendmessage function sees it."""
        return replace(
            platform,
            cpu_ms_per_post=_own(self.cpu_ms_per_post, platform.cpu_ms_per_post),
            memory_mb=_own(self.memory_mb, platform.memory_mb),
            function_timeout_s=_own(self.timeout_s, platform.function_timeout_s),
            item_bytes=_own(self.item_bytes, platform.item_bytes),
        )


def _own(figure: _Figure | None, platform_figure: _Figure) -> _Figure:
    return platform_figure if figure is None else figure


TUTORIAL_SOURCE = (
    "measured on the local stage over TLS, AMD EPYC (stage_as_aws 2026-12-06, BENCHMARKS.md): "
    "a least-squares line through the tutorial's median Lambda CPU per broadcast at 99, 299 "
    "and 999 recipients (255, 486 and 874 ms)"
)
TUTORIAL = VariantShape(
    Variant.TUTORIAL,
    post_concurrency=50,
    paginates=False,
    cpu_ms_per_post=0.65,
    invocation_cpu_ms=234.0,
    memory_mb=256,
    timeout_s=10.0,
    item_bytes=28,
    sources=(
        (
            "post_concurrency",
            "AWS SDK for JavaScript v3: NodeHttpHandler's agent defaults to "
            "maxSockets 50; Promise.all starts every post at once",
        ),
        ("cpu_ms_per_post", f"{TUTORIAL_SOURCE}: the slope"),
        (
            "invocation_cpu_ms",
            f"{TUTORIAL_SOURCE}: the intercept (a new management client, "
            "so new TLS connections, per invocation)",
        ),
        ("memory_mb", "the tutorial's template: SendMessageHandler MemorySize 256"),
        ("timeout_s", "the tutorial's template: SendMessageHandler Timeout 10"),
        ("item_bytes", "DynamoDB's item-size rule: connectionId (12) and a 16-character id"),
    ),
)
"""The AWS tutorial's own app (``fanbench_common/apps/tutorial``), as its template deploys it."""

VARIANTS: dict[str, VariantShape] = {
    Variant.SEQUENTIAL: VariantShape(Variant.SEQUENTIAL, post_concurrency=1, paginates=False),
    Variant.BASELINE: VariantShape(Variant.BASELINE, post_concurrency=50, paginates=False),
    Variant.OPTIMIZED: VariantShape(Variant.OPTIMIZED, post_concurrency=32, paginates=True),
    Variant.SHARDED: VariantShape(
        Variant.SHARDED, post_concurrency=32, paginates=True, shard_size=500, scan_segments=4
    ),
    Variant.TUTORIAL: TUTORIAL,
}
"""Shapes of the handlers as deployed with template.yaml's defaults: the tutorial's 50-socket
agent (baseline), PostConcurrency 32 (optimized, and each fan-out of sharded); and the
tutorial's own app as its own template deploys it."""

MEASURED_HERE = "measured on the local stage, AMD EPYC 2 cores (BENCHMARKS.md)"
AWS = Platform(
    name="aws",
    cpu_ms_per_post=0.73,
    scan_ms_per_item=0.0055,
    post_latency_ms=10.0,
    scan_page_ms=20.0,
    item_bytes=62,
    sources={
        "cpu_ms_per_post": f"{MEASURED_HERE}: cost_curve's FanoutMs slope, boto3 on one core "
        "(PostClient=boto3, as the baseline posts); the template's default for optimized and "
        "sharded is now PostClient=signed, which measured 0.23-0.27 ms of Lambda CPU per post "
        "against boto3's 0.56-0.71 in the same runs (post_ceiling, 2026-11-30): pass "
        "--cpu-ms-per-post 0.27 to plan for it",
        "scan_ms_per_item": "measured here: boto3's client CPU parsing a 20,000-item projected "
        "scan from moto (0.0054-0.0056 ms per item)",
        "post_latency_ms": "assumption: AWS publishes no callback latency (IntegrationLatency is "
        "not reported for callbacks); override with --post-latency-ms from your own runs",
        "scan_page_ms": "assumption: one 1 MB DynamoDB Scan page in-region",
        "item_bytes": "DynamoDB's item-size rule applied to a connection item (handler_fanout)",
        "memory_mb": "template.yaml: SendMessageFunction MemorySize",
        "effective_cores": "Lambda docs: 1,769 MB = 1 vCPU; the GIL keeps Python on one core",
        "invoke_ms": "assumption: one Invoke API call in-region",
        "async_start_ms": "assumption: AWS publishes no figure for asynchronous invocation delay",
        "concurrency": "Lambda quotas: 1,000 concurrent executions per account and Region",
        "scale_per_10s": "Lambda docs: each function scales by 1,000 environments every 10 s",
        "callback_rps": "API Gateway quotas: 10,000 requests/s per account, callbacks included",
        "callback_burst": "API Gateway quotas: burst 5,000",
        "function_timeout_s": "template.yaml: SendMessageFunction Timeout (API Gateway stops "
        "waiting at 29 s too)",
    },
)
LOCAL_STAGE = Platform(
    name="local-stage",
    cpu_ms_per_post=0.73,
    scan_ms_per_item=0.079,
    post_latency_ms=20.0,
    scan_page_ms=5.0,
    item_bytes=71,
    concurrency=8,
    scale_per_10s=1_000_000,
    callback_rps=None,
    invoke_ms=2.0,
    async_start_ms=5.0,
    host_cores=2.0,
    host_cpu_ms_per_post=0.10,
    fixed_ms=15.0,
    sources={
        "cpu_ms_per_post": f"{MEASURED_HERE}: cost_curve's FanoutMs slope (PostClient=boto3; "
        "signed: 0.23-0.27 ms, post_ceiling 2026-11-30)",
        "scan_ms_per_item": f"{MEASURED_HERE}: cost_curve's ScanMs slope (moto's time included)",
        "post_latency_ms": "the benchmarks' injected @connections delay (--post-latency-ms 20)",
        "host_cpu_ms_per_post": f"{MEASURED_HERE}: stage_headroom's @connections CPU per POST",
        "fixed_ms": f"{MEASURED_HERE}: cost_curve's time-to-last intercept",
        "item_bytes": "moto's item-size rule applied to a connection item (handler_fanout)",
        "concurrency": "fanbench stage's default --concurrency",
        "host_cores": "this machine: 2 cores shared by the stage, its Lambda workers and moto",
    },
)
PLATFORMS = {platform.name: platform for platform in (AWS, LOCAL_STAGE)}


@dataclass(frozen=True)
class Prediction:
    variant: str
    audience: int
    recipients: int
    reached: int
    """Recipients the variant delivers to (its scan's reach and its timeout allowing)."""
    seconds: float
    """Time from the send to the last delivery it makes."""
    limit: str
    """What bounds the fan-out: cpu, in-flight posts, callback quota, concurrency, timeout."""
    invocations: int
    lambda_gb_seconds: float
    cost_usd: float
    """One broadcast: API Gateway messages, Lambda, the scan's reads."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def bucket_seconds(posts: float, offered_rps: float, rate: float | None, burst: float) -> float:
    """Seconds to make ``posts`` calls at ``offered_rps`` through a full token bucket."""
    if posts <= 0:
        return 0.0
    if rate is None or offered_rps <= rate:
        return posts / offered_rps
    empties_after_s = burst / (offered_rps - rate)
    if posts <= offered_rps * empties_after_s:
        return posts / offered_rps
    return empties_after_s + (posts - offered_rps * empties_after_s) / rate


def function_post_rate(platform: Platform, variant: VariantShape) -> tuple[float, str]:
    """Posts per second one function sustains, and which of its limits binds."""
    platform = variant.function(platform)
    cpu_s = platform.cpu_ms_per_post / 1000 / platform.effective_cores
    in_flight = variant.post_concurrency / (platform.post_latency_ms / 1000 + cpu_s)
    cpu_bound = 1 / cpu_s
    if platform.host_cores is not None:
        per_post_host_s = (platform.cpu_ms_per_post + platform.host_cpu_ms_per_post) / 1000
        cpu_bound = min(cpu_bound, platform.host_cores / per_post_host_s)
    return (in_flight, "in-flight posts") if in_flight < cpu_bound else (cpu_bound, "cpu")


def _scan_seconds(platform: Platform, items: int, segments: int, paginates: bool) -> float:
    pages = max(1, math.ceil(items / platform.items_per_page)) if paginates else 1
    read = min(items, items if paginates else platform.items_per_page)
    cpu_s = read * platform.scan_ms_per_item / 1000 / platform.effective_cores
    return math.ceil(pages / max(1, segments)) * platform.scan_page_ms / 1000 + cpu_s


def _read_units(platform: Platform, items: int) -> float:
    return math.ceil(items * platform.item_bytes / READ_UNIT_BYTES) * (
        EVENTUALLY_CONSISTENT_READ_UNITS
    )


def _cost(
    prices: Prices,
    message_bytes: int,
    reached: int,
    invocations: int,
    gb_seconds: float,
    read_units: float,
) -> float:
    units = max(1, math.ceil(message_bytes / METERING_INCREMENT_BYTES))
    messages = (1 + reached) * units
    usage = Usage(
        api_gateway_messages=messages,
        sendmessage_requests=invocations,
        sendmessage_gb_seconds=gb_seconds,
        dynamodb_read_units=read_units,
    )
    return sum(priced(usage, prices).values())


def predict(
    platform: Platform,
    variant: VariantShape,
    audience: int,
    prices: Prices | None = None,
    message_bytes: int = 64,
) -> Prediction:
    """Time to last delivery and cost of one broadcast to ``audience`` connections."""
    prices = prices or Prices()
    platform = variant.function(platform)
    recipients = max(0, audience - 1)
    visible = recipients if variant.paginates else min(recipients, platform.items_per_page - 1)
    scanned = audience if variant.paginates else min(audience, platform.items_per_page)
    read_units = _read_units(platform, scanned)
    fixed_s = (platform.fixed_ms + variant.invocation_cpu_ms / platform.effective_cores) / 1000
    latency_s = platform.post_latency_ms / 1000
    rate, limit = function_post_rate(platform, variant)
    memory_gb = platform.memory_mb / 1024

    if variant.shard_size is None:
        scan_s = _scan_seconds(platform, audience, variant.scan_segments, variant.paginates)
        if platform.callback_rps is not None and rate > platform.callback_rps:
            post_s = bucket_seconds(visible, rate, platform.callback_rps, platform.callback_burst)
            if post_s > visible / rate * 1.001:
                limit = "callback quota"
        else:
            post_s = visible / rate if visible else 0.0
        seconds = fixed_s + scan_s + post_s + (latency_s if visible else 0.0)
        reached = visible
        if seconds > platform.function_timeout_s:
            budget_s = max(0.0, platform.function_timeout_s - fixed_s - scan_s - latency_s)
            reached = min(visible, int(budget_s * rate))
            seconds, limit = platform.function_timeout_s, "timeout"
        gb_seconds = memory_gb * seconds
        cost = _cost(prices, message_bytes, reached, 1, gb_seconds, read_units)
        return Prediction(
            variant.name, audience, recipients, reached, seconds, limit, 1, gb_seconds, cost
        )

    shards = math.ceil(visible / variant.shard_size)
    scan_s = _scan_seconds(platform, audience, variant.scan_segments, variant.paginates)
    dispatch_s = math.ceil(shards / platform.invoke_threads) * platform.invoke_ms / 1000
    dispatcher_s = fixed_s + scan_s + dispatch_s
    if not shards:
        gb_seconds = memory_gb * dispatcher_s
        cost = _cost(prices, message_bytes, 0, 1, gb_seconds, read_units)
        return Prediction(variant.name, audience, recipients, 0, dispatcher_s, limit, 1,
                          gb_seconds, cost)  # fmt: skip
    running = min(shards, platform.concurrency)
    if shards > running:
        limit = "concurrency"
    # The last of ``running`` environments exists only after the function has scaled out.
    scale_delay_s = LAMBDA_SCALE_WINDOW_S * ((running - 1) // platform.scale_per_10s)
    if scale_delay_s:
        limit = "scaling"
    aggregate = running * rate
    if platform.host_cores is not None:
        per_post_host_s = (platform.cpu_ms_per_post + platform.host_cpu_ms_per_post) / 1000
        if aggregate > platform.host_cores / per_post_host_s:
            aggregate, limit = platform.host_cores / per_post_host_s, "host cpu"
    posting_s = visible / aggregate
    if platform.callback_rps is not None and aggregate > platform.callback_rps:
        quota_s = bucket_seconds(visible, aggregate, platform.callback_rps, platform.callback_burst)
        if quota_s > posting_s * 1.001:
            posting_s, limit = quota_s, "callback quota"
    posting_s = max(posting_s, min(visible, variant.shard_size) / rate)
    seconds = dispatcher_s + platform.async_start_ms / 1000 + scale_delay_s + posting_s + latency_s
    per_shard_s = min(
        platform.fanout_timeout_s, min(visible, variant.shard_size) / rate + latency_s
    )
    gb_seconds = memory_gb * (dispatcher_s + shards * per_shard_s)
    cost = _cost(prices, message_bytes, visible, 1 + shards, gb_seconds, read_units)
    return Prediction(
        variant.name, audience, recipients, visible, seconds, limit, 1 + shards, gb_seconds, cost
    )


def plan(
    platform: Platform,
    variants: list[VariantShape],
    sizes: tuple[int, ...] = ROOM_SIZES,
    prices: Prices | None = None,
    message_bytes: int = 64,
) -> list[Prediction]:
    return [
        predict(platform, variant, size, prices, message_bytes)
        for size in sizes
        for variant in variants
    ]


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def plan_markdown(platform: Platform, predictions: list[Prediction]) -> str:
    """The plan as a Markdown table, followed by every assumption and its source."""
    lines = [
        f"# Capacity plan: {platform.name}",
        "",
        "One broadcast to a room of N connections (N - 1 recipients).",
        "",
        "| N | variant | reached | to last delivery | bound by | invocations | "
        "Lambda GB-s | USD per million broadcasts |",
        "|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for p in predictions:
        reached = f"{p.reached:,}" if p.reached == p.recipients else f"**{p.reached:,}**"
        lines.append(
            f"| {p.audience:,} | {p.variant} | {reached} | {_seconds(p.seconds)} | {p.limit} | "
            f"{p.invocations:,} | {p.lambda_gb_seconds:.3f} | {p.cost_usd * 1e6:,.2f} |"
        )
    lines += ["", "## Assumptions", ""]
    for name, value in asdict(platform).items():
        if name in ("sources", "name"):
            continue
        source = platform.sources.get(name, "fanbench's default")
        lines.append(f"- `{name}` = {value}: {source}")
    lines.append(
        f"- `effective_cores` = {platform.effective_cores:.3f}: "
        + platform.sources.get("effective_cores", "memory / 1,769 MB, at most 1")
    )
    shown = [v for v in VARIANTS.values() if v.name in {p.variant for p in predictions}]
    lines.append(
        "- variants: "
        + "; ".join(
            f"{v.name}: {v.post_concurrency} posts in flight"
            + (", one scan page" if not v.paginates else ", every scan page")
            + (f", shards of {v.shard_size}" if v.shard_size else "")
            for v in shown
        )
    )
    for v in shown:
        for name, source in v.sources:
            lines.append(f"- {v.name}'s own `{name}` = {getattr(v, name)}: {source}")
    return "\n".join(lines) + "\n"
