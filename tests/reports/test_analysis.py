"""analyze() and its parts on synthetic runs whose every figure is known in advance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanbench_common.redaction import REDACTED
from fanbench_common.rundir import STILL_CONNECTED, Run, read_run, write_run
from reports.analysis import analyze, gather, measured_window_start, per_message, per_second
from reports.stats import wilson_interval
from tests.reports.synthetic import SECOND, START_NS, build_run

LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "max", "mean")


def synthetic(tmp_path: Path, **options: Any) -> Run:
    return read_run(build_run(tmp_path / "run", **options))


def rewrite_health(run: Run, cpu: list[float], t_ns: list[int]) -> Run:
    """Replace the health samples of a run on disk, keeping everything else."""
    np.savez(
        run.path / "records" / "health.npz",
        process=np.zeros(len(cpu), dtype=np.int64),
        t_ns=np.asarray(t_ns, dtype=np.int64),
        cpu_percent=np.asarray(cpu, dtype=np.float64),
        send_lag_ms=np.zeros(len(cpu)),
        loop_lag_ms=np.zeros(len(cpu)),
    )
    return read_run(run.path)


def rewrite_meta(run: Run, **changes: Any) -> Run:
    meta = json.loads((run.path / "run.json").read_text())
    meta.update(changes)
    (run.path / "run.json").write_text(json.dumps(meta))
    return read_run(run.path)


def test_fixed_latency_is_every_percentile(tmp_path: Path) -> None:
    summary = analyze(synthetic(tmp_path, clients=5, messages_per_sender=10, latency_ms=12.5))
    for key in LATENCY_KEYS:
        assert summary.latency_ms.from_sent.named(key) == pytest.approx(12.5), key
        assert summary.latency_ms.from_intended.named(key) == pytest.approx(12.5), key
    assert summary.latency_ms.deliveries_measured == 5 * 10 * 4
    counts = summary.counts
    assert (counts.messages, counts.expected, counts.delivered) == (50, 200, 200)
    assert (counts.lost, counts.duplicates, counts.unexpected) == (0, 0, 0)
    assert (counts.late, counts.negative_latency, counts.error_frames) == (0, 0, 0)
    assert summary.validity == ()


def test_latency_from_intended_adds_the_send_lag(tmp_path: Path) -> None:
    summary = analyze(synthetic(tmp_path, latency_ms=10.0, send_lag_ms=7.0))
    for key in LATENCY_KEYS:
        assert summary.latency_ms.from_sent.named(key) == pytest.approx(10.0), key
        assert summary.latency_ms.from_intended.named(key) == pytest.approx(17.0), key


def test_percentiles_are_nearest_rank_over_deliveries(tmp_path: Path) -> None:
    # Two clients, 50 messages each, latencies 1..100 ms across the 100 deliveries.
    run = synthetic(
        tmp_path,
        clients=2,
        messages_per_sender=50,
        latency_ms=lambda sender, seq, receiver: 1.0 + seq + 50 * sender,
    )
    from_sent = analyze(run).latency_ms.from_sent
    assert from_sent.p50 == pytest.approx(50.0)
    assert from_sent.p90 == pytest.approx(90.0)
    assert from_sent.p99 == pytest.approx(99.0)
    assert from_sent.p99_9 == pytest.approx(100.0)
    assert from_sent.max == pytest.approx(100.0)
    assert from_sent.mean == pytest.approx(50.5)


def test_warmup_deliveries_leave_the_latency_statistics(tmp_path: Path) -> None:
    # Sends at start + (seq + 1) s + sender * 10 ms: with a 3.5 s warm-up seqs 0-2 are warm-up.
    run = synthetic(
        tmp_path,
        clients=5,
        messages_per_sender=10,
        warmup_s=3.5,
        latency_ms=lambda sender, seq, receiver: 1000.0 if seq < 3 else 5.0,
    )
    assert measured_window_start(run) == START_NS + 3 * SECOND + SECOND // 2
    summary = analyze(run)
    assert summary.latency_ms.deliveries_measured == 7 * 5 * 4
    assert summary.latency_ms.from_sent.max == pytest.approx(5.0)
    # Loss accounting still covers the warm-up.
    assert summary.counts.delivered == 10 * 5 * 4
    lat = gather(run).latencies
    assert np.all(run.sends["seq"][lat.message] >= 3)


def test_drops_and_duplicates_reach_the_counts_and_rates(tmp_path: Path) -> None:
    drop = [(0, 0, 1), (0, 1, 2), (3, 9, 4)]
    duplicate = [(1, 0, 0), (2, 5, 3)]
    summary = analyze(synthetic(tmp_path, clients=5, drop=drop, duplicate=duplicate, errors=3))
    counts = summary.counts
    assert (counts.expected, counts.delivered, counts.lost) == (200, 197, 3)
    assert counts.duplicates == 2
    assert counts.receipts == 197 + 2
    assert counts.error_frames == 3
    assert summary.rates.loss.count == 3
    assert summary.rates.loss.rate == pytest.approx(3 / 200)
    low, high = summary.rates.loss.ci95
    assert low < 3 / 200 < high
    assert summary.rates.duplicates.rate == pytest.approx(2 / 199)
    assert summary.rates.error_frames.rate == pytest.approx(3 / 50)
    assert summary.errors_by_kind == {"error_frame": 3}
    # Duplicates are not second latency samples.
    assert summary.latency_ms.deliveries_measured == 197


def test_negative_latency_is_kept_in_the_statistics(tmp_path: Path) -> None:
    run = synthetic(
        tmp_path,
        clients=3,
        messages_per_sender=4,
        latency_ms=lambda sender, seq, receiver: (
            -2.0 if (sender, seq, receiver) == (0, 0, 1) else 3.0
        ),
    )
    summary = analyze(run)
    assert summary.counts.negative_latency == 1
    assert summary.latency_ms.deliveries_measured == 3 * 4 * 2
    assert float(np.min(gather(run).latencies.from_sent_ms)) == pytest.approx(-2.0)


def test_per_message_completion_and_spread(tmp_path: Path) -> None:
    # Receiver r hears every message after 10 + 5 r ms.
    run = synthetic(
        tmp_path,
        clients=4,
        messages_per_sender=3,
        latency_ms=lambda sender, seq, receiver: 10.0 + 5.0 * receiver,
        drop=[(1, 2, 3)],
    )
    table = per_message(gather(run))
    assert len(table["message"]) == 12
    for index, completion, spread, audience, receipts in zip(
        table["message"],
        table["completion_ms"],
        table["spread_ms"],
        table["audience"],
        table["receipts"],
        strict=True,
    ):
        sender, seq = int(run.sends["client"][index]), int(run.sends["seq"][index])
        receivers = [r for r in range(4) if r != sender and (sender, seq, r) != (1, 2, 3)]
        heard = [10.0 + 5.0 * r for r in receivers]
        assert completion == pytest.approx(max(heard)), (sender, seq)
        assert spread == pytest.approx(max(heard) - min(heard)), (sender, seq)
        assert audience == 3
        assert receipts == len(receivers)


def test_per_message_of_no_deliveries_is_empty(tmp_path: Path) -> None:
    run = synthetic(tmp_path, clients=1, messages_per_sender=3)
    table = per_message(gather(run))
    assert len(table["completion_ms"]) == len(table["spread_ms"]) == len(table["audience"]) == 0


def test_per_second_bins_sum_to_the_totals(tmp_path: Path) -> None:
    drop = [(0, 0, 1), (2, 4, 1), (2, 4, 3)]
    run = synthetic(tmp_path, clients=4, messages_per_sender=10, drop=drop, errors=2)
    bins = per_second(gather(run))
    summary = analyze(run)
    assert len(bins["second"]) == 12  # end is start + 12 s
    assert int(bins["sends"].sum()) == summary.counts.messages == 40
    assert int(bins["deliveries"].sum()) == summary.counts.receipts
    assert int(bins["lost"].sum()) == summary.counts.lost == 3
    assert int(bins["errors"].sum()) == 2
    # One send per client in each of seconds 1..10; the drops of seq 4 land in second 5.
    assert bins["sends"].tolist() == [0] + [4] * 10 + [0]
    assert bins["lost"].tolist() == [0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0]
    assert np.isnan(bins["p50_ms"][0])
    assert bins["p50_ms"][1] == pytest.approx(10.0)
    assert bins["p99_ms"][10] == pytest.approx(10.0)


def test_per_second_percentiles_are_nearest_rank(tmp_path: Path) -> None:
    # 2 clients, one message each in second 1: two deliveries, latencies 1 and 9 ms.
    run = synthetic(
        tmp_path,
        clients=2,
        messages_per_sender=1,
        latency_ms=lambda sender, seq, receiver: 1.0 if sender == 0 else 9.0,
    )
    bins = per_second(gather(run))
    assert bins["p50_ms"][1] == pytest.approx(1.0)
    assert bins["p99_ms"][1] == pytest.approx(9.0)


def test_validity_flags_a_saturated_generator(tmp_path: Path) -> None:
    problems = analyze(synthetic(tmp_path, health_cpu=95.0)).validity
    assert len(problems) == 1
    assert "CPU" in problems[0]
    assert "95" in problems[0]


def test_validity_is_quiet_for_a_calm_generator(tmp_path: Path) -> None:
    assert analyze(synthetic(tmp_path, health_cpu=10.0)).validity == ()


def test_validity_flags_send_lag(tmp_path: Path) -> None:
    problems = analyze(synthetic(tmp_path, send_lag_ms=80.0)).validity
    assert any("send lag" in problem for problem in problems)


def test_validity_ignores_cpu_outside_the_measured_window(tmp_path: Path) -> None:
    run = synthetic(tmp_path, warmup_s=2.0)
    # Busy while starting up (before start + warm-up) and after sending stopped only.
    stop = int(run.meta["times"]["stop_sending_ns"])
    quiet = rewrite_health(
        run, [99.0, 20.0, 99.0], [START_NS + SECOND, START_NS + 5 * SECOND, stop + 1]
    )
    assert analyze(quiet).validity == ()
    busy = rewrite_health(run, [20.0, 99.0], [START_NS + SECOND, START_NS + 5 * SECOND])
    assert len(analyze(busy).validity) == 1


def test_validity_flags_uncertain_clocks_and_incomplete_collection(tmp_path: Path) -> None:
    run = rewrite_meta(
        synthetic(tmp_path),
        clock_offsets={"1": {"offset_ns": 0, "uncertainty_ns": 6_000_000}},
        collection={"complete": False},
    )
    problems = analyze(run).validity
    assert len(problems) == 2
    assert "clock of process 1" in problems[0]
    assert "collected" in problems[1]


def test_throughput_over_the_sending_window(tmp_path: Path) -> None:
    summary = analyze(synthetic(tmp_path, clients=3, messages_per_sender=10))
    throughput = summary.throughput
    assert throughput.duration_s == pytest.approx(11.0)
    assert throughput.sends_per_s == pytest.approx(30 / 11)
    assert throughput.deliveries_per_s == pytest.approx(60 / 11)


def test_unexpected_receipts_are_not_latency_samples(tmp_path: Path) -> None:
    # Client 2 connects 1 ms after the send, yet receives it: not an expected pair,
    # so it is neither a delivery nor a latency sample.
    sent = START_NS + SECOND
    tables: dict[str, dict[str, list[Any]]] = {
        "sends": {
            "client": [0],
            "seq": [0],
            "intended_ns": [sent],
            "sent_ns": [sent],
            "bytes": [64],
        },
        "deliveries": {
            "client": [1, 2],
            "sender": [0, 0],
            "seq": [0, 0],
            "received_ns": [sent + 5_000_000, sent + 900_000_000],
        },
        "membership": {
            "client": [0, 1, 2],
            "audience": ["*", "*", "*"],
            "connected_ns": [START_NS, START_NS, sent + 1_000_000],
            "disconnected_ns": [STILL_CONNECTED] * 3,
        },
    }
    meta = {
        "scenario": {"settle_s": 1.0, "warmup_s": 0.0},
        "target": "ws://127.0.0.1:1/local",
        "variant": "optimized",
        "times": {
            "start_ns": START_NS,
            "stop_sending_ns": START_NS + 2 * SECOND,
            "drain_deadline_ns": START_NS + 3 * SECOND,
            "end_ns": START_NS + 3 * SECOND,
        },
    }
    run = read_run(write_run(tmp_path / "run", meta, tables))
    summary = analyze(run)
    assert (summary.counts.delivered, summary.counts.unexpected) == (1, 1)
    assert summary.latency_ms.deliveries_measured == 1
    assert summary.latency_ms.from_sent.max == pytest.approx(5.0)
    table = per_message(gather(run))
    assert table["receipts"].tolist() == [1]
    assert table["audience"].tolist() == [1]


def test_the_loss_interval_counts_messages_not_deliveries(tmp_path: Path) -> None:
    # 50 messages of 4 recipients, none lost: the bound is that of 50 trials, not of 200,
    # since a message's recipients are served by one invocation and share its fate.
    loss = analyze(read_run(build_run(tmp_path / "run"))).rates.loss
    assert (loss.count, loss.rate, loss.messages_with_expected_recipients) == (0, 0.0, 50)
    assert loss.ci95[0] == 0.0
    assert loss.ci95[1] == pytest.approx(wilson_interval(0, 50)[1])
    assert loss.ci95[1] > 3 * wilson_interval(0, 200)[1]


def test_whole_lost_messages_widen_the_interval_beyond_scattered_losses(tmp_path: Path) -> None:
    # Both lose 8 of 200 deliveries: one as 2 whole messages, one spread over 8 messages.
    whole = [(0, seq, receiver) for seq in (2, 5) for receiver in range(1, 5)]
    scattered = [(sender, 1, (sender + 1) % 5) for sender in range(5)] + [
        (sender, 3, (sender + 2) % 5) for sender in range(3)
    ]
    wide = analyze(read_run(build_run(tmp_path / "whole", drop=whole))).rates.loss
    narrow = analyze(read_run(build_run(tmp_path / "scattered", drop=scattered))).rates.loss
    assert wide.count == narrow.count == 8
    assert wide.ci95[1] - wide.ci95[0] > narrow.ci95[1] - narrow.ci95[0]


def test_the_ledger_is_built_once_per_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fanbench_common.loss
    import reports.analysis
    from reports.prices import Prices
    from reports.render import write_report

    built: list[int] = []
    real = fanbench_common.loss.ledger

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fanbench_common.loss, "ledger", counting)
    monkeypatch.setattr(reports.analysis, "ledger", counting)
    write_report(build_run(tmp_path / "run"), Prices())
    assert len(built) == 1


def test_the_summary_never_carries_a_secret(tmp_path: Path) -> None:
    run = read_run(build_run(tmp_path / "run", scenario={"token": "s3cret", "auth_token": "x"}))
    scenario = analyze(run).scenario
    assert scenario["token"] == REDACTED
    assert scenario["auth_token"] == REDACTED


def test_the_summary_document_keeps_its_published_shape(tmp_path: Path) -> None:
    """summary.json and the comparison read ``Summary.to_json()``: its keys and their order
    at every level are the documented ``summary_version`` 1, whatever the attributes are."""
    summary = analyze(synthetic(tmp_path, drop=[(0, 2, 1)], duplicate=[(1, 1, 2)], errors=2))
    document = summary.to_json()
    assert list(document) == [
        "summary_version", "run", "variant", "target", "scenario", "counts", "latency_ms",
        "rates", "throughput", "errors_by_kind", "validity", "saturation",
    ]  # fmt: skip
    assert document["summary_version"] == 1
    assert list(document["counts"]) == [
        "messages", "expected", "delivered", "lost", "duplicates", "out_of_order", "late",
        "unexpected", "negative_latency", "error_frames", "receipts", "dropped", "loss_rate",
    ]  # fmt: skip
    assert list(document["latency_ms"]) == ["from_sent", "from_intended", "deliveries_measured"]
    for name in ("from_sent", "from_intended"):
        assert tuple(document["latency_ms"][name]) == LATENCY_KEYS
    assert list(document["rates"]) == [
        "loss", "duplicates", "out_of_order", "late", "negative_latency", "error_frames",
    ]  # fmt: skip
    assert list(document["rates"]["loss"]) == [
        "count", "rate", "ci95", "messages_with_expected_recipients",
    ]  # fmt: skip
    for name in ("duplicates", "out_of_order", "late", "negative_latency", "error_frames"):
        assert list(document["rates"][name]) == ["count", "rate", "ci95"], name
    assert list(document["throughput"]) == ["sends_per_s", "deliveries_per_s", "duration_s"]
    assert document["errors_by_kind"] == {"error_frame": 2}
    assert list(document["saturation"]) == ["limited_by", "system", "generator"]
    # Plain JSON all the way down (lists, not tuples), and the attributes are its values.
    assert json.loads(json.dumps(document)) == document
    assert document["rates"]["loss"]["ci95"] == list(summary.rates.loss.ci95)
    assert document["counts"]["lost"] == summary.counts.lost == 1
    for key in LATENCY_KEYS:
        value = summary.latency_ms.from_sent.named(key)
        assert document["latency_ms"]["from_sent"][key] == value is not None
    assert summary.latency_ms.from_sent.p99_9 == summary.latency_ms.from_sent.named("p99.9")
