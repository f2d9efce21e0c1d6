"""Analysis of one run directory: every headline figure, as plain data (pure numpy).

``gather(run)`` builds the loss ledger once and the latencies from it; every
figure below (``analyze``, ``per_message``, ``per_second``) takes those facts
rather than rebuilding the ledger. ``analyze`` returns what the report,
``fanbench run``'s summary, the comparison and the threshold gate all read, so
each figure is computed once: a ``reports.summary.Summary``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fanbench_common.loss import Ledger, LossAccount, account, ledger
from fanbench_common.redaction import redact_mapping
from fanbench_common.rundir import ErrorKind, Run
from reports import saturation
from reports.stats import clustered_rate_interval, wilson_interval
from reports.summary import (
    Latency,
    LossRate,
    Percentiles,
    Rate,
    Rates,
    Summary,
    Throughput,
)

NS_PER_MS = 1e6

# Generator-saturation thresholds for the validity banner.
MAX_CPU_PERCENT = 90.0
MAX_SEND_LAG_MS = 50.0
MAX_LOOP_LAG_MS = 50.0
MAX_CLOCK_UNCERTAINTY_MS = 5.0


@dataclass(frozen=True)
class Latencies:
    """Per-delivery latencies (first receipts of expected pairs, warm-up excluded)."""

    received_ns: npt.NDArray[np.int64]
    from_sent_ms: npt.NDArray[np.float64]
    from_intended_ms: npt.NDArray[np.float64]
    message: npt.NDArray[np.int64]
    """Index into the sends table."""


def _settle_ns(run: Run) -> int:
    return int(float(run.scenario.get("settle_s", 1.0)) * 1e9)


def measured_window_start(run: Run) -> int:
    """Sends before this epoch-ns instant are warm-up and leave latency statistics out."""
    times = run.meta["times"]
    return int(times["start_ns"] + float(run.scenario.get("warmup_s", 0.0)) * 1e9)


@dataclass(frozen=True)
class RunFacts:
    """A run with its loss ledger and measured latencies: built once, read by every figure."""

    run: Run
    ledger: Ledger
    latencies: Latencies


def gather(run: Run) -> RunFacts:
    """The ledger (the costly part) once, and the latencies from it."""
    facts = ledger(run.sends, run.deliveries, run.membership, _settle_ns(run))
    return RunFacts(run, facts, latencies(run, facts))


def latencies(run: Run, facts: Ledger) -> Latencies:
    keep = facts.receipt_expected & facts.receipt_first  # expected implies a known send
    message = facts.receipt_message[keep]
    keep_measured = run.sends["sent_ns"][message] >= measured_window_start(run)
    message = message[keep_measured]
    received = run.deliveries["received_ns"][keep][keep_measured]
    return Latencies(
        received_ns=received,
        from_sent_ms=(received - run.sends["sent_ns"][message]) / NS_PER_MS,
        from_intended_ms=(received - run.sends["intended_ns"][message]) / NS_PER_MS,
        message=message,
    )


def per_message(facts: RunFacts) -> dict[str, npt.NDArray[Any]]:
    """Fan-out completion (last receipt) and spread (last − first) per measured message."""
    lat = facts.latencies
    if not len(lat.message):
        empty = np.array([], dtype=np.float64)
        return {
            "audience": np.array([], dtype=np.int64),
            "completion_ms": empty,
            "spread_ms": empty,
        }
    order = np.argsort(lat.message, kind="stable")
    messages, starts = np.unique(lat.message[order], return_index=True)
    latest = np.maximum.reduceat(lat.from_sent_ms[order], starts)
    earliest = np.minimum.reduceat(lat.from_sent_ms[order], starts)
    counts = np.diff(np.append(starts, len(order)))
    return {
        "message": messages,
        "audience": facts.ledger.expected_per_message[messages],
        "receipts": counts,
        "completion_ms": latest,
        "spread_ms": latest - earliest,
    }


def per_second(facts: RunFacts) -> dict[str, npt.NDArray[Any]]:
    """Counts and latency percentiles in one-second bins from the start of the test."""
    run, lat = facts.run, facts.latencies
    start = int(run.meta["times"]["start_ns"])
    end = int(run.meta["times"].get("end_ns") or start)
    seconds = max(1, int(np.ceil((end - start) / 1e9)))
    bins = np.arange(seconds + 1)

    def count(stamps: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        return np.histogram((stamps - start) / 1e9, bins=bins)[0].astype(np.int64)

    lost_per_message = lost_per_message_of(facts.ledger)
    lost = np.histogram((run.sends["sent_ns"] - start) / 1e9, bins=bins, weights=lost_per_message)[
        0
    ].astype(np.int64)
    second_of = ((lat.received_ns - start) // 1_000_000_000).astype(np.int64)
    p50 = np.full(seconds, np.nan)
    p99 = np.full(seconds, np.nan)
    for s in np.unique(second_of):
        if 0 <= s < seconds:
            values = lat.from_sent_ms[second_of == s]
            p50[s], p99[s] = np.percentile(values, [50, 99], method="inverted_cdf")
    return {
        "second": bins[:-1],
        "sends": count(run.sends["sent_ns"]),
        "deliveries": count(run.deliveries["received_ns"]),
        "lost": lost,
        "errors": count(run.errors["t_ns"]),
        "p50_ms": p50,
        "p99_ms": p99,
    }


def generator_problems(run: Run) -> list[str]:
    """The load generator's own saturation, from its health samples."""
    problems: list[str] = []
    # Only the measured window counts: start-up (imports, connects) is not the test.
    window = (run.health["t_ns"] >= measured_window_start(run)) & (
        run.health["t_ns"] <= run.meta["times"]["stop_sending_ns"]
    )
    health = {column: values[window] for column, values in run.health.items()}
    if len(health["t_ns"]):
        if float(np.max(health["cpu_percent"])) > MAX_CPU_PERCENT:
            problems.append(f"load generator CPU reached {np.max(health['cpu_percent']):.0f} %")
        if float(np.max(health["send_lag_ms"])) > MAX_SEND_LAG_MS:
            problems.append(f"send lag p99 reached {np.max(health['send_lag_ms']):.0f} ms")
        if float(np.max(health["loop_lag_ms"])) > MAX_LOOP_LAG_MS:
            problems.append(f"receive-loop lag reached {np.max(health['loop_lag_ms']):.0f} ms")
    return problems


def validity(run: Run) -> list[str]:
    """Reasons the latency figures may describe the generator rather than the system."""
    problems = generator_problems(run)
    for process, clock in (run.meta.get("clock_offsets") or {}).items():
        if not clock.get("measured", True):
            problems.append(f"clock of process {process} was never measured (offset unknown)")
            continue
        uncertainty_ms = clock.get("uncertainty_ns", 0) / NS_PER_MS
        if uncertainty_ms > MAX_CLOCK_UNCERTAINTY_MS:
            problems.append(f"clock of process {process} uncertain by ±{uncertainty_ms:.1f} ms")
    collection = run.meta.get("collection", {})
    missing = collection.get("missing_processes") or {}
    for process, took in missing.items():
        problems.append(
            f"worker {process} went missing: its {took['sends']} sends, {took['receipts']}"
            f" receipts and {took['clients']} clients are counted only until it was last heard"
        )
    if not collection.get("complete", True) and not missing:
        problems.append("not every worker's records were collected")
    drain = run.meta.get("drain") or {}
    if drain and not drain.get("settled", True):
        problems.append(
            f"receipts were still arriving when collection stopped at the drain limit"
            f" ({drain.get('limit_s', 0):.0f} s after sending stopped): some of the lost may"
            " have been in flight (raise --drain-limit)"
        )
    return problems


def lost_per_message_of(facts: Ledger) -> npt.NDArray[np.int64]:
    """Expected deliveries of each message (sends table order) that never arrived."""
    return facts.expected_per_message - facts.delivered_per_message


def _loss_rate(facts: Ledger) -> LossRate:
    """The loss rate with its interval counted over messages, not deliveries.

    A message's recipients share one invocation, so its deliveries are lost (or
    not) together; see ``stats.effective_trials``.
    """
    lost, expected = lost_per_message_of(facts), facts.expected_per_message
    total = int(expected.sum())
    low, high = clustered_rate_interval(lost, expected)
    return LossRate(
        count=int(lost.sum()),
        rate=int(lost.sum()) / total if total else 0.0,
        ci95=(low, high),
        messages_with_expected_recipients=int(np.count_nonzero(expected)),
    )


def _rate(count: int, trials: int) -> Rate:
    low, high = wilson_interval(count, trials)
    return Rate(count=count, rate=count / trials if trials else 0.0, ci95=(low, high))


def analyze(run_or_facts: Run | RunFacts) -> Summary:
    """Every headline figure of a run (pass ``gather(run)`` when it is at hand);
    ``.to_json()`` is its JSON document."""
    facts = run_or_facts if isinstance(run_or_facts, RunFacts) else gather(run_or_facts)
    run, lat = facts.run, facts.latencies
    times = run.meta["times"]
    loss = account(
        run.sends, run.deliveries, run.membership, run.errors, _settle_ns(run),
        times.get("drain_deadline_ns"), facts=facts.ledger,
    )  # fmt: skip
    duration_s = max(1e-9, (times["stop_sending_ns"] - times["start_ns"]) / 1e9)
    receipts = max(loss.receipts, 1)
    return Summary(
        run=str(run.path),
        variant=run.meta.get("variant", ""),
        target=run.meta.get("target", ""),
        # Never a secret in a summary, a report or a comparison built from it.
        scenario=redact_mapping(run.scenario),
        counts=loss,
        latency_ms=Latency(
            from_sent=Percentiles.of(lat.from_sent_ms),
            from_intended=Percentiles.of(lat.from_intended_ms),
            deliveries_measured=len(lat.from_sent_ms),
        ),
        rates=Rates(
            loss=_loss_rate(facts.ledger),
            duplicates=_rate(loss.duplicates, receipts),
            out_of_order=_rate(loss.out_of_order, receipts),
            late=_rate(loss.late, receipts),
            negative_latency=_rate(loss.negative_latency, receipts),
            error_frames=_rate(loss.error_frames, max(loss.messages, 1)),
        ),
        throughput=Throughput(
            sends_per_s=loss.messages / duration_s,
            deliveries_per_s=loss.receipts / duration_s,
            duration_s=duration_s,
        ),
        errors_by_kind={
            str(kind): int(n)
            for kind, n in zip(*np.unique(run.errors["kind"], return_counts=True), strict=True)
        },
        validity=tuple(validity(run)),
        saturation=_saturation(run, loss, lat),
    )


def _saturation(run: Run, loss: LossAccount, lat: Latencies) -> saturation.Saturation:
    sent_s = run.sends["sent_ns"][lat.message] / 1e9
    seen = saturation.client_reasons(
        loss.as_dict(),
        int(np.sum(run.errors["kind"] == ErrorKind.CONNECT_FAILED)),
        saturation.p50_trend(sent_s, lat.from_sent_ms),
    )
    stage = saturation.stage_reasons(run.meta.get("stage") or {}, corroborated=bool(seen))
    return saturation.verdict(stage + seen, generator_problems(run))
