"""Benchmark 4, generator_capacity: receipts/s one Locust process sustains, fanbench vs reference.

A broadcast server in its own process (``bench.gen_server``: raw pre-framed
writes, so it is not the bottleneck) paces frames to U connections; a Locust
process (``bench.gen_driver``, gevent, run as a subprocess) holds the U users.
At each rung of a rate ladder the process has *sustained* the rate when: the
server never found a write buffer full, ≥ 95 % of frames were received by the
rung's end, every frame was recorded after a 1 s drain, and the receive-loop
lag p99 (oversleep of ``gevent.sleep(0.01)``) stayed under 5 ms. Capacity is
the highest sustained rung; rounds alternate the users against the same
server, and medians are kept. A final burst (M frames per connection, as fast
as the sockets take them) gives the saturated receive rate. fanbench's user
(receipts into Locust's statistics a batch at a time) runs beside the same user
firing Locust's request event per frame, for the per-batch / per-frame ratio.

Then one Locust process of fanbench users holds as many connections as asked
(10,000 by default) or as many as the open-files hard limit allows, whichever is
fewer: the memory each costs (resident-set growth from before the first user to
all connected, per connection) and a burst to every one of them.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import REPO_ROOT
from bench.child import JsonLineChild
from bench.gen_driver import FILES_PER_CONNECTION, SPARE_FILES
from bench.record import BenchResult, Ratio, Scalar, Size, median, now_utc, safe_ratio

NAME = "generator_capacity"
USERS = ("fanbench", "fanbench-per-frame", "reference", "reference-noutf8")
CORE_USERS = USERS[:3]
"""Every round; reference-noutf8 only in ``Plan.extra_rounds``."""
TARGET_RECEIPTS_PER_S = 20_000
TARGET_RATIO = 1.5
TARGET_BATCH_RATIO = 1.25
TARGET_CONNECTIONS = 10_000
HOLD_SPAWN_RATE = 400.0
"""Users started per second in the connection-holding run: fast, without overflowing the
server's listen backlog into SYN retries."""
LAG_LIMIT_MS = 5.0


@dataclass(frozen=True)
class Plan:
    users: int
    rates: tuple[int, ...]
    step_s: float
    rounds: int
    burst: int
    """Frames per connection in the final burst."""
    refine: int = 1
    """Bisection rungs between the highest sustained rung and the first failure above it."""
    extra_rounds: int = 1
    """Rounds that also run the reference-noutf8 user (informative, no target)."""
    message_bytes: int = 64
    hold: int = TARGET_CONNECTIONS
    """Connections one process is asked to hold (fewer if the open-files limit says so)."""
    hold_burst: int = 5
    """Frames to every held connection."""


PLANS: dict[str, Plan] = {
    "smoke": Plan(
        users=10, rates=(1000, 2000), step_s=0.5, rounds=1, burst=1000, refine=0, hold=300,
    ),
    "default": Plan(
        users=100, rates=(*range(10_000, 100_001, 10_000), 120_000, 140_000),
        step_s=1.5, rounds=3, burst=1000,
    ),
    "full": Plan(
        users=100, rates=(*range(5_000, 100_001, 5_000), 120_000, 140_000, 160_000),
        step_s=3.0, rounds=5, burst=500, refine=2, extra_rounds=5,
    ),
}  # fmt: skip


def drive(port: int, user: str, plan: Plan) -> dict[str, Any]:
    """One Locust process with ``plan.users`` users of kind ``user``; its JSON result."""
    budget_s = 60 + 2 * (len(plan.rates) + plan.refine) * (plan.step_s + 2.5) + 60
    argv = [
        sys.executable, "-m", "bench.gen_driver", "--user", user, "--port", str(port),
        "--users", str(plan.users), "--rates", ",".join(map(str, plan.rates)),
        "--step-s", str(plan.step_s), "--burst", str(plan.burst),
        "--lag-limit-ms", str(LAG_LIMIT_MS), "--max-seconds", str(budget_s),
        "--refine", str(plan.refine),
    ]  # fmt: skip
    return _driver(argv, user, budget_s)


def holdable(hard_limit: int, wanted: int) -> int:
    """Connections one process can hold under an open-files hard limit (all of ``wanted``
    when unlimited)."""
    if hard_limit == resource.RLIM_INFINITY:
        return wanted
    return max(0, min(wanted, (hard_limit - SPARE_FILES) // FILES_PER_CONNECTION))


def hold(port: int, users: int, frames: int) -> dict[str, Any]:
    """One Locust process holding ``users`` fanbench users; memory, and a burst to all."""
    budget_s = 120 + users / HOLD_SPAWN_RATE * 3
    argv = [
        sys.executable, "-m", "bench.gen_driver", "--user", "fanbench", "--port", str(port),
        "--users", str(users), "--rates", "", "--burst", str(frames),
        "--spawn-rate", str(HOLD_SPAWN_RATE), "--max-seconds", str(budget_s),
    ]  # fmt: skip
    return _driver(argv, "fanbench (holding)", budget_s)


def _driver(argv: list[str], user: str, budget_s: float) -> dict[str, Any]:
    done = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=budget_s, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"gen_driver {user} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def capacity(result: dict[str, Any]) -> dict[str, Any]:
    """The highest sustained rung of one driver run (an empty dict when none was)."""
    kept = [step for step in result["steps"] if step["sustained"]]
    return max(kept, key=lambda step: step["rate"]) if kept else {}


def _summary(user: str, runs: list[dict[str, Any]]) -> dict[str, Scalar]:
    tops = [capacity(run) for run in runs]
    return {
        "user": user,
        "sustained rung, frames/s": median(float(top.get("rate", 0)) for top in tops),
        "receipts/s at that rung": median(
            top["received_by_end"] / top["seconds"] if top else 0.0 for top in tops
        ),
        "lag p99 ms at that rung": median(top.get("lag_p99_ms", float("nan")) for top in tops),
        "burst receipts/s": median(run["burst"]["receipts_per_s"] for run in runs),
        "burst lag p99 ms": median(run["burst"]["lag_p99_ms"] for run in runs),
        "burst receipts per CPU-second": median(run["burst"]["receipts_per_cpu_s"] for run in runs),
        "every receipt recorded": all(  # sustained rungs require it; the burst drains 30 s
            step["received"] == step["sent"]
            for run in runs
            for step in run["steps"]
            if step["sustained"]
        )
        and all(run["burst"]["received"] == run["burst"]["sent"] for run in runs),
        "Locust counted every receipt": all(
            run["locust_fanout_requests"] == run["recorded"] for run in runs
        ),
        "rounds": len(runs),
    }


def _ladder(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Scalar]]:
    """Every rung tried: in how many rounds it passed (either attempt), and medians of all."""
    rows: list[dict[str, Scalar]] = []
    for user in USERS:
        rates = sorted({s["rate"] for run in runs[user] for s in run["steps"]})
        for rate in rates:
            per_round = [[s for s in run["steps"] if s["rate"] == rate] for run in runs[user]]
            tried = [steps for steps in per_round if steps]
            steps = [s for attempts in tried for s in attempts]
            rows.append(
                {
                    "user": user,
                    "offered frames/s": rate,
                    "passed (rounds)": f"{sum(any(s['sustained'] for s in a) for a in tried)}"
                    f"/{len(tried)}",
                    "attempts": len(steps),
                    "receipts/s by rung end": median(
                        s["received_by_end"] / s["seconds"] for s in steps
                    ),
                    "lag p50 ms": median(s["lag_p50_ms"] for s in steps),
                    "lag p99 ms": median(s["lag_p99_ms"] for s in steps),
                    "raw lag p99 ms": median(s["raw_lag_p99_ms"] for s in steps),
                    "lag max ms": median(s["lag_max_ms"] for s in steps),
                    "load avg": median(s["load_average"] for s in steps),
                    "server skipped": sum(s["behind"] for s in steps),
                }
            )
    return rows


def _held(result: dict[str, Any], asked: int, target: int, hard_limit: int) -> dict[str, Scalar]:
    burst = result["burst"]
    return {
        "asked": target,
        "held (connected)": int(result["connected"]),
        "bounded by": "the request"
        if asked == target
        else f"open files: hard limit {hard_limit:,} / {FILES_PER_CONNECTION} per connection",
        "connect s": float(result["connect_s"]),
        "connect failures": int(result["connect_failures"]),
        "RSS before MB": result["rss_before"] / 2**20,
        "RSS held MB": result["rss_connected"] / 2**20,
        "RSS KB per connection": result["rss_per_connection"] / 1024,
        "burst frames": int(burst["sent"]),
        "burst received": int(burst["received"]),
        "Locust counted every receipt": result["locust_fanout_requests"] == result["recorded"],
    }


def run(size: Size, work_dir: Path) -> BenchResult:
    plan = PLANS[size]
    started, began = now_utc(), time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {user: [] for user in USERS}
    argv = [sys.executable, "-m", "bench.gen_server", str(plan.message_bytes)]
    with JsonLineChild(argv, ready_timeout_s=30.0) as server:
        port = int(server.ready["port"])
        for round_ in range(plan.rounds):
            users = USERS if round_ < plan.extra_rounds else CORE_USERS
            for user in users if round_ % 2 == 0 else users[::-1]:
                runs[user].append(drive(port, user, plan))
        hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        asked = holdable(hard_limit, plan.hold)
        holding = hold(port, asked, plan.hold_burst)
    held = _held(holding, asked, plan.hold, hard_limit)
    rows = [_summary(user, runs[user]) for user in USERS]
    rate = {str(r["user"]): float(r["receipts/s at that rung"] or 0.0) for r in rows}
    burst = {str(r["user"]): float(r["burst receipts/s"] or 0.0) for r in rows}
    per_cpu = {str(r["user"]): float(r["burst receipts per CPU-second"] or 0.0) for r in rows}
    fan_rate, frame_rate, ref_rate, raw_rate = (rate[user] for user in USERS)
    fan_burst, frame_burst, ref_burst, raw_burst = (burst[user] for user in USERS)
    connections = int(holding["connected"])
    ratios = [
        Ratio("fanbench per-batch / per-frame sustained receipts/s",
              safe_ratio(fan_rate, frame_rate), TARGET_BATCH_RATIO,
              f"{fan_rate:,.0f} / {frame_rate:,.0f}: Locust statistics per batch of receipts "
              "vs a request event per receipt"),
        Ratio("fanbench per-batch / per-frame burst receipts/s",
              safe_ratio(fan_burst, frame_burst), None, f"{fan_burst:,.0f} / {frame_burst:,.0f}"),
        Ratio("fanbench per-batch / per-frame burst receipts per CPU-second",
              safe_ratio(per_cpu["fanbench"], per_cpu["fanbench-per-frame"]), TARGET_BATCH_RATIO,
              f"{per_cpu['fanbench']:,.0f} / {per_cpu['fanbench-per-frame']:,.0f}: the generator "
              "process's own CPU (user + system) over the burst"),
        Ratio(f"connections held by one process / {plan.hold:,}", connections / plan.hold, 1.0,
              f"{connections:,} held, {held['RSS KB per connection']:.1f} KB RSS each; "
              f"bounded by {held['bounded by']}"),
        Ratio("fanbench sustained receipts/s / 20,000", fan_rate / TARGET_RECEIPTS_PER_S, 1.0,
              f"{fan_rate:,.0f} receipts/s with lag p99 < {LAG_LIMIT_MS:.0f} ms"),
        Ratio("fanbench / reference sustained receipts/s", safe_ratio(fan_rate, ref_rate),
              TARGET_RATIO, f"{fan_rate:,.0f} / {ref_rate:,.0f}"),
        Ratio("fanbench / reference burst receipts/s", safe_ratio(fan_burst, ref_burst), None,
              f"{fan_burst:,.0f} / {ref_burst:,.0f}"),
        Ratio("fanbench / reference-noutf8 sustained receipts/s", safe_ratio(fan_rate, raw_rate),
              None, f"{fan_rate:,.0f} / {raw_rate:,.0f}"),
        Ratio("fanbench / reference-noutf8 burst receipts/s", safe_ratio(fan_burst, raw_burst),
              None, f"{fan_burst:,.0f} / {raw_burst:,.0f}"),
    ]  # fmt: skip
    notes = [
        "Sustained = no frame skipped by the server, ≥ 95 % received by the rung's end, every "
        f"frame recorded after a 1 s drain, receive-loop lag p99 < {LAG_LIMIT_MS:.0f} ms, in "
        "either of two attempts (so one hiccup of this shared host does not fail a rung). The "
        "ladder stops after two failed rungs in a row, or one clearly saturated (p50 lag over "
        f"the limit, p99 over 10×, or < 90 % received in time), then {plan.refine} bisection "
        "rung(s) between the highest sustained rung and the failure above it; capacity is the "
        f"highest sustained rung, median of {plan.rounds} rounds "
        f"(reference-noutf8: {min(plan.extra_rounds, plan.rounds)}).",
        "fanbench-per-frame and both references do the same per-frame work (envelope decode, "
        "recorder.delivery, one Locust request event); fanbench does the same but puts "
        "receipts into Locust's statistics a batch at a time (loadtest/receipt_stats.py). "
        "Batches leave the recorder every second. The server runs in its own process, on "
        "the other core.",
        f"Holding: {plan.hold:,} fanbench users asked of one process, started "
        f"{HOLD_SPAWN_RATE:.0f}/s, unless the open-files hard limit allows fewer (a websockets "
        f"sync client holds {FILES_PER_CONNECTION} descriptors: its socket and a socketpair "
        "that wakes its reader at close); RSS growth from before the first user to all "
        f"connected, per connection; then {plan.hold_burst} frames to every connection.",
        "Lag is the oversleep of gevent.sleep(0.01) net of the run-queue wait the kernel "
        "reports for the process (/proc/self/schedstat) — other tenants of this shared host "
        "are not the generator's lag; a saturated receive loop still counts in full. The raw "
        "p99 is in the ladder beside it.",
        "reference = websocket-client as python-engineio opens it (UTF-8 validation on, which "
        "without the optional wsaccel runs in pure Python); reference-noutf8 skips validation.",
    ]
    parameters: dict[str, Any] = {**asdict(plan), "lag_limit_ms": LAG_LIMIT_MS}
    figures: dict[str, Scalar] = {
        "connections held by one process": connections,
        "RSS per held connection, KB": held["RSS KB per connection"],
        "open-files hard limit": hard_limit,
    }
    tables = {"ladder": _ladder(runs), "connections held": [held]}
    return BenchResult(
        NAME, size, parameters, rows, ratios, notes, figures, tables,
        started_at=started, duration_s=time.perf_counter() - began,
    )  # fmt: skip
