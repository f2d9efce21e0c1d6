"""Benchmark 9, side_by_side: calibration of ``fanbench run --variants A B``.

Two questions, each answered by real side-by-side runs of the local stage
(``fanbench run --variants``, two stages, the swarm split evenly, 20 ms per post
on both sides so the fan-out has a floor to measure against):

* **identical sides** (``optimized`` against ``optimized``): how often the blocked
  verdict calls p50 or p99 "different" (the target at 95 % is 5 %), and the
  minimum detectable p50 change each run prints;
* **known differences**: one side with a fixed extra delay per post
  (``post_latency_ms``) or fewer concurrent posts (``PostConcurrency``): found
  or not, the measured ratio, and the detectable change.

A false-"different" rate of 5 % needs about a hundred real runs to measure to
±4 points, far more than a few minutes allow; the real A/A runs here check that
identical sides are not called different at a glance, and the rate itself comes
from ``simulated_false_different``: sides sharing per-second host noise (slow
spells doubling latency for seconds at a time), each with its own per-message
lognormal delay, compared exactly as a real run is (``reports.blocked``).

Each run is also compared the between-run way, one run a side, message by
message (``fanbench compare A B``), so the table shows how much narrower pairing
by block makes the interval on the very same deliveries.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.record import BenchResult, Ratio, Scalar, Size, median, now_utc
from reports.blocked import SideData, compare_blocked
from reports.compare import write_comparison

NAME = "side_by_side"
POST_MS = 20.0
RUN_TIMEOUT_S = 400.0
SECOND = 1_000_000_000


@dataclass(frozen=True)
class Plan:
    duration_s: float
    users: int
    send_interval_s: float
    warmup_s: float
    identical_runs: int
    differences: tuple[tuple[str, str], ...]
    """(description, side B's settings after ``optimized:``), one run each."""
    simulated_pairs: int


PLANS: dict[str, Plan] = {
    # One short run (the end-to-end test of --variants covers the rest): the bookkeeping.
    "smoke": Plan(4.0, 6, 0.25, 1.0, 1, (), 100),
    "default": Plan(
        60.0,
        40,
        2.0,
        10.0,
        3,
        (
            ("+2 ms per post (≈ 5 % of p50)", "post_latency_ms=22"),
            ("+4 ms per post (≈ 10 % of p50)", "post_latency_ms=24"),
            ("PostConcurrency 2 (19 recipients)", "PostConcurrency=2"),
        ),
        1000,
    ),
    "full": Plan(
        60.0,
        40,
        2.0,
        10.0,
        10,
        (
            ("+2 ms per post", "post_latency_ms=22"),
            ("+4 ms per post", "post_latency_ms=24"),
            ("+2 ms per post", "post_latency_ms=22"),
            ("+4 ms per post", "post_latency_ms=24"),
            ("PostConcurrency 8", "PostConcurrency=8"),
            ("PostConcurrency 2", "PostConcurrency=2"),
        ),
        4000,
    ),
}


def _run(plan: Plan, side_b: str, root: Path) -> dict[str, Any]:
    """One real side-by-side run; its blocked delta and the unpaired comparison of its sides."""
    command = [
        sys.executable, "-m", "fanbench", "run",
        "--variants", "optimized", f"optimized:{side_b}",
        "--users", str(plan.users), "--spawn-rate", str(max(2, plan.users // 2)),
        "--duration", str(plan.duration_s), "--send-interval", str(plan.send_interval_s),
        "--warmup", str(plan.warmup_s), "--post-latency-ms", str(POST_MS),
        "--quiet", "--no-report", "--run-dir", str(root),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        env={**os.environ, "MPLBACKEND": "Agg"}, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"side-by-side run failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    (delta,) = json.loads((root / "comparison" / "comparison.json").read_text())["deltas"]
    a, b = sorted(p for p in root.iterdir() if p.name[:2] in ("A-", "B-"))
    unpaired = json.loads(
        write_comparison([a, b], root / "unpaired", force=False, draw_charts=False)
        .with_name("comparison.json")
        .read_text()
    )["deltas"][0]
    return {"delta": delta, "unpaired": unpaired}


def _different(interval: dict[str, Any]) -> bool:
    low, high = interval["ci95"]
    return low is not None and high is not None and not (low <= 1.0 <= high)


def _row(kind: str, side_b: str, result: dict[str, Any]) -> dict[str, Scalar]:
    delta, unpaired = result["delta"], result["unpaired"]
    p50, p99 = delta["p50_ratio"], delta["p99_ratio"]
    blocks = delta["blocks"]
    detectable = blocks["detectable"]["p50"]
    return {
        "sides": kind,
        "B": f"optimized:{side_b}",
        "blocks": f"{blocks['used']['p50']} × {blocks['block_s']:g} s",
        "p50 ratio B/A": p50["point"],
        "p50 95 % CI": _ci(p50),
        "p50 called different": _different(p50),
        "p99 ratio B/A": p99["point"],
        "p99 called different": _different(p99),
        "detectable p50 change %": None if detectable is None else 100 * detectable,
        "unpaired p50 95 % CI (one run a side)": _ci(unpaired["p50_ratio"]),
    }


def _ci(interval: dict[str, Any]) -> str:
    low, high = interval["ci95"]
    return "–" if low is None or high is None else f"{low:.3f}–{high:.3f}"


# --- the simulated calibration ---------------------------------------------------------------


def _simulated_side(
    rng: np.random.Generator, noise: npt.NDArray[np.float64], seconds: int
) -> SideData:
    """10 messages a second to 19 recipients, one lognormal delay per message (σ 0.5, median
    30 ms, as one invocation serves every recipient) times each second's shared host noise,
    plus 0–4 ms per delivery."""
    per_second, recipients = 10, 19
    messages = seconds * per_second
    sent = np.sort(rng.integers(0, seconds * SECOND, messages)).astype(np.int64)
    shared = 30.0 * rng.lognormal(0.0, 0.5, messages) * noise[sent // SECOND]
    latency = np.repeat(shared, recipients) + rng.uniform(0, 4, messages * recipients)
    lost, expected = np.zeros(messages, np.int64), np.full(messages, recipients, np.int64)
    return SideData(np.repeat(sent, recipients), latency, sent, lost, expected)


def simulated_false_different(pairs: int, seconds: int = 50, seed: int = 0) -> dict[str, float]:
    """Share of identical simulated pairs whose p50 or p99 interval excludes 1, and the
    median detectable p50 change."""
    rng = np.random.default_rng(seed)
    called = {"p50": 0, "p99": 0}
    detectable = []
    for _ in range(pairs):
        noise = np.exp(np.repeat(rng.normal(0.0, 0.35, seconds // 5 + 1), 5))
        result = compare_blocked(_simulated_side(rng, noise, seconds),
                                 _simulated_side(rng, noise, seconds))  # fmt: skip
        for figure in called:
            paired = result[figure]
            called[figure] += not (paired.low <= 1.0 <= paired.high)
        detectable.append(result["p50"].detectable)
    return {
        "p50": called["p50"] / pairs,
        "p99": called["p99"] / pairs,
        "detectable_p50": float(np.median(detectable)),
    }


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    started, began = now_utc(), time.perf_counter()
    work_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Scalar]] = []
    identical = []
    for index in range(plan.identical_runs):
        result = _run(plan, f"post_latency_ms={POST_MS:g}", work_dir / f"identical{index}")
        identical.append(result)
        rows.append(_row("identical", f"post_latency_ms={POST_MS:g}", result))
    for index, (description, side_b) in enumerate(plan.differences):
        result = _run(plan, side_b, work_dir / f"different{index}")
        rows.append(_row(description, side_b, result))
    simulated = simulated_false_different(plan.simulated_pairs)
    detectable = [r["detectable p50 change %"] for r in rows if r["sides"] == "identical"]
    called = sum(bool(r["p50 called different"]) or bool(r["p99 called different"])
                 for r in rows if r["sides"] == "identical")  # fmt: skip
    widths = [_width(r["p50 95 % CI"]) / _width(r["unpaired p50 95 % CI (one run a side)"])
              for r in rows]  # fmt: skip
    finite = [w for w in widths if math.isfinite(w)]
    figures: dict[str, Scalar] = {
        "identical runs called different (p50 or p99)": f"{called} of {plan.identical_runs}",
        "median detectable p50 change on identical runs, %": median(
            [float(d) for d in detectable if isinstance(d, float)]
        ),
        "simulated identical pairs called different, p50 %": 100 * simulated["p50"],
        "simulated identical pairs called different, p99 %": 100 * simulated["p99"],
        "simulated median detectable p50 change, %": 100 * simulated["detectable_p50"],
        "load average (1 min) before / after": f"{load_before:.1f} / {os.getloadavg()[0]:.1f}",
    }
    return BenchResult(
        name=NAME,
        size=size,
        parameters={
            "duration_s": plan.duration_s,
            "users (both sides)": plan.users,
            "send_interval_s": plan.send_interval_s,
            "warmup_s": plan.warmup_s,
            "post_latency_ms": POST_MS,
            "simulated_pairs": plan.simulated_pairs,
        },
        rows=rows,
        ratios=[
            Ratio(
                "paired / unpaired p50 interval width (median over runs)",
                median(finite) if finite else math.nan,
                None,
                "the same deliveries, paired by block against bootstrapped by message",
            )
        ],
        figures=figures,
        notes=[
            "Each row is one run of `fanbench run --variants optimized optimized:<B>` with "
            f"{POST_MS:g} ms per post on both sides; 'different' means the 95 % interval of "
            "the B/A ratio excludes 1.",
        ],
        started_at=started,
        duration_s=time.perf_counter() - began,
    )


def _width(text: Scalar) -> float:
    if not isinstance(text, str) or "–" not in text or text == "–":
        return math.nan
    low, high = (float(x) for x in text.split("–"))
    return high - low
