"""The invocation's shared pacer under 429s (pure: the tests pass the time)."""

from __future__ import annotations

import pytest

from pacing import DECREASE, FLOOR_RPS, RECOVERY_RPS_PER_S, Pacer


def test_unthrottled_posts_are_not_paced() -> None:
    pacer = Pacer(0.0)
    assert [pacer.reserve(0.001 * i, 10.0) for i in range(5)] == [0.001 * i for i in range(5)]
    assert pacer.rate is None


def test_the_first_429_halves_the_rate_posts_were_accepted_at() -> None:
    pacer = Pacer(0.0)
    for i in range(100):  # 100 accepted in the first 0.5 s: 200/s
        pacer.delivered(0.005 * i, 0.005 * i + 0.001)
    pacer.throttled(0.5, 0.5)
    rate = pacer.rate
    assert rate is not None
    assert rate == pytest.approx(200 * DECREASE, rel=0.05)
    first = pacer.reserve(0.5, 10.0)
    second = pacer.reserve(0.5, 10.0)
    assert first == pytest.approx(0.5 + 1 / rate)  # a pause after the cut, then the pace
    assert second == pytest.approx(0.5 + 2 / rate)


def test_429s_from_before_the_cut_do_not_cut_again() -> None:
    pacer = Pacer(0.0)
    for i in range(50):
        pacer.delivered(0.0, 0.01 * i)
    pacer.throttled(0.40, 0.45)
    after_one = pacer.rate
    for _ in range(30):  # the rest of the burst, sent before the cut
        pacer.throttled(0.44, 0.46)
    assert pacer.rate == after_one
    assert pacer.throttles == 31
    pacer.throttled(0.47, 0.50)  # sent at the new pace and still throttled
    assert after_one is not None
    assert pacer.rate == pytest.approx(max(FLOOR_RPS, after_one * DECREASE))


def test_the_rate_never_falls_below_the_floor_and_recovers_on_deliveries() -> None:
    pacer = Pacer(0.0)
    for step in range(20):
        pacer.throttled(float(step), float(step))
    assert pacer.rate == FLOOR_RPS
    pacer.delivered(20.0, 20.0)
    assert pacer.rate == pytest.approx(FLOOR_RPS + RECOVERY_RPS_PER_S / FLOOR_RPS)


def test_no_slot_is_reserved_past_the_latest_start() -> None:
    pacer = Pacer(0.0)
    pacer.throttled(0.0, 0.0)  # nothing accepted yet: the floor
    starts = [pacer.reserve(0.0, 0.35) for _ in range(6)]
    assert starts[:3] == pytest.approx([0.1, 0.2, 0.3])
    assert starts[3:] == [None, None, None]


def test_the_slowest_answer_is_kept() -> None:
    pacer = Pacer(0.0)
    pacer.answered(1.0, 1.4)
    pacer.delivered(2.0, 2.1)
    assert pacer.slowest_s == pytest.approx(0.4)
