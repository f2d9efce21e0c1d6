"""Time budgets inside one invocation (pure): how long one AWS call may block.

botocore fixes a client's connect and read timeouts when the client is built,
so a call cannot be given "whatever time is left". Instead each call gets the
largest of a few fixed budgets that still fits before its deadline, and a
client per budget is kept warm. A call started 0.5 s before the deadline thus
blocks for at most 0.3 s, not for the default 2 s connect + 5 s read.
"""

from __future__ import annotations

import time
from typing import Any

CALL_BUDGETS_S = (7.0, 3.0, 2.0, 1.5, 1.0, 0.6, 0.3, 0.1)
"""Largest first. 7 s is the default 2 s connect + 5 s read; under the last, no call starts.
Close steps below 3 s: near the deadline a call gets nearly all the time left, so a slow
answer (400 ms) is still heard instead of the call being refused as too short for it
(``callbacks.LATENCY_MARGIN``)."""
CONNECT_SHARE = 2 / 7
"""The default timeouts' split (2 s of 7 s to connect), kept at every budget."""
UNKNOWN_REMAINING_MS = 3000
"""Lambda's default timeout, assumed when the context cannot say (a bare test context)."""


def call_budget_s(seconds_left: float) -> float | None:
    """The largest budget that ends by the deadline, or None when none does."""
    for budget in CALL_BUDGETS_S:
        if budget <= seconds_left:
            return budget
    return None


def timeouts_s(budget_s: float) -> tuple[float, float]:
    """(connect, read) timeouts that add up to ``budget_s``."""
    connect = round(budget_s * CONNECT_SHARE, 3)
    return connect, round(budget_s - connect, 3)


def remaining_ms(context: Any) -> int:
    """What Lambda says is left of this invocation."""
    get_remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(get_remaining):
        return int(get_remaining())
    return UNKNOWN_REMAINING_MS


def monotonic_deadline(context: Any, reserve_ms: float) -> float:
    """A ``time.monotonic()`` deadline ``reserve_ms`` before the invocation's own."""
    return time.monotonic() + max(0.0, remaining_ms(context) - reserve_ms) / 1000
