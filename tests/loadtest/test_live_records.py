"""When the master's running ledger may count a delivery lost (``loadtest.live_records``)."""

from __future__ import annotations

from loadtest.live_records import loss_horizon_ns

SECOND = 1_000_000_000


def test_the_horizon_waits_the_longer_of_drain_and_settle_plus_two_shipping_intervals() -> None:
    now = 100 * SECOND
    assert loss_horizon_ns(now, drain_s=3.0, settle_s=1.0, ship_interval_s=1.0) == now - 5 * SECOND
    assert loss_horizon_ns(now, drain_s=1.0, settle_s=4.0, ship_interval_s=0.5) == now - 5 * SECOND
