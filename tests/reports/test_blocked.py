"""Blocked, paired statistics: textbook values, shared noise cancelling, false alarms, power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ttest_1samp

from reports.blocked import (
    MIN_DELIVERIES,
    SideData,
    block_edges,
    compare_blocked,
    detectable_words,
    lag1_autocorrelation,
    paired_mean,
    paired_ratio,
)

SECOND = 1_000_000_000
START = 1_700_000_000 * SECOND


def test_paired_mean_is_the_paired_t_interval() -> None:
    # Alternating signs: no positive autocorrelation, so the plain paired t interval applies.
    d = np.array([0.3, -0.1, 0.4, 0.0, 0.5, -0.2, 0.6, 0.1, 0.2, -0.1])
    assert lag1_autocorrelation(d) < 0
    result = paired_mean(d)
    reference = ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert result.point == pytest.approx(0.17)
    assert (result.low, result.high) == pytest.approx((reference.low, reference.high))
    assert (result.blocks, result.effective_blocks) == (10, 10)


def test_minimum_detectable_difference_is_the_textbook_one() -> None:
    """n = 10, s = 0.1: (t₀.₉₇₅,₉ + t₀.₈₀,₉) · s/√10 = (2.2622 + 0.8834) · 0.0316 = 0.0995."""
    d = np.array([0.1, -0.1] * 5) * math.sqrt(9 / 10)  # sample sd exactly 0.1, mean 0
    assert float(np.std(d, ddof=1)) == pytest.approx(0.1)
    result = paired_mean(d)
    assert result.detectable == pytest.approx((2.26216 + 0.88340) * 0.1 / math.sqrt(10), abs=1e-4)
    assert paired_ratio(d).detectable == pytest.approx(math.expm1(result.detectable))


def test_correlated_blocks_count_as_fewer() -> None:
    # A slow drift: neighbours alike, lag-1 autocorrelation well above 0.
    d = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1])
    r = lag1_autocorrelation(d)
    assert r > 0.5
    result = paired_mean(d)
    assert result.effective_blocks == pytest.approx(max(2.0, 12 * (1 - r) / (1 + r)))
    plain = ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert result.high - result.low > plain.high - plain.low


def test_too_few_blocks_give_nan() -> None:
    result = paired_ratio([0.1])
    assert math.isnan(result.point)
    assert math.isnan(result.detectable)
    assert "unknown" in detectable_words("p50", result)


def test_block_edges_cover_only_the_overlap_and_shorten_for_short_runs() -> None:
    edges = block_edges([START, START + 2 * SECOND], [START + 62 * SECOND, START + 61 * SECOND])
    assert edges[0] == START + 2 * SECOND
    assert np.all(np.diff(edges) == 5 * SECOND)
    assert len(edges) - 1 == 11  # 59 s of overlap: 11 whole blocks of 5 s
    short = block_edges([START], [START + 16 * SECOND])
    assert np.all(np.diff(short) == 2 * SECOND)
    assert len(short) - 1 == 8
    assert len(block_edges([START + SECOND], [START])) == 0


def simulated_side(
    rng: np.random.Generator, noise: np.ndarray, factor: float, seconds: int = 60
) -> SideData:
    """A side of 10 messages a second to 19 recipients each, ~20 ms lognormal latencies,
    every second's latencies multiplied by the shared ``noise`` of that second (the host)."""
    per_second, recipients = 10, 19
    messages = seconds * per_second
    message_sent = START + np.sort(rng.integers(0, seconds * SECOND, messages))
    second = (message_sent - START) // SECOND
    base = 20.0 * factor * noise[second]
    latency = np.repeat(base, recipients) * rng.lognormal(0.0, 0.3, messages * recipients)
    return SideData(
        delivery_sent_ns=np.repeat(message_sent, recipients),
        latency_ms=latency,
        message_sent_ns=message_sent,
        lost=np.zeros(messages, dtype=np.int64),
        expected=np.full(messages, recipients, dtype=np.int64),
    )


def shared_noise(rng: np.random.Generator, seconds: int = 60) -> np.ndarray:
    """Host noise both sides feel: slow spells that double latency for seconds at a time."""
    return np.exp(np.repeat(rng.normal(0.0, 0.35, seconds // 5), 5))


def test_shared_noise_cancels_and_a_10_percent_difference_is_found() -> None:
    rng = np.random.default_rng(1)
    noise = shared_noise(rng)
    result = compare_blocked(simulated_side(rng, noise, 1.0), simulated_side(rng, noise, 1.10))
    p50 = result["p50"]
    assert 1.0 < p50.low <= 1.10 <= p50.high, p50
    assert p50.detectable < 0.10
    assert result["blocks"] == 11
    assert result["block_s"] == 5.0
    assert result["series"]["deliveries_a"].min() >= MIN_DELIVERIES
    assert result["loss"].point == 0.0


def test_identical_sides_under_shared_noise_are_rarely_called_different() -> None:
    """The false-"different" rate on identical sides stays near the nominal 5 %."""
    rng = np.random.default_rng(2)
    trials, different = 200, 0
    for _ in range(trials):
        noise = shared_noise(rng)
        p50 = compare_blocked(simulated_side(rng, noise, 1.0), simulated_side(rng, noise, 1.0))[
            "p50"
        ]
        different += not (p50.low <= 1.0 <= p50.high)
    assert different / trials <= 0.08, different


def test_losses_in_blocks_are_paired_too() -> None:
    rng = np.random.default_rng(3)
    noise = shared_noise(rng)
    a, b = simulated_side(rng, noise, 1.0), simulated_side(rng, noise, 1.0)
    lossy = SideData(
        b.delivery_sent_ns, b.latency_ms, b.message_sent_ns,
        lost=(np.arange(len(b.lost)) % 2).astype(np.int64) * 3, expected=b.expected,
    )  # fmt: skip
    loss = compare_blocked(a, lossy)["loss"]
    assert loss.point == pytest.approx(1.5 / 19, rel=0.05)
    assert loss.low > 0.0
