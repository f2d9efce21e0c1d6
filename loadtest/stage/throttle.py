"""Throttling rules (pure; the caller supplies time and counts).

API Gateway's account-level throttle is a token bucket. Lambda throttles a
synchronous invocation (429 ``TooManyRequestsException``) when the invocations
already in flight reach the concurrency limit (the account's quota, or a
function's reserved concurrency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; ``False`` means throttle this request."""
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


def lambda_admits(in_flight: int, limit: int | None) -> bool:
    """Whether Lambda runs one more invocation with ``in_flight`` already running.

    ``limit`` ``None`` admits everything (the stage's queueing mode: past its
    local slots, invocations wait instead).
    """
    return limit is None or in_flight < limit


def nearest_rank(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 → p99); 0.0 for no values."""
    if not 0 < fraction <= 1:
        raise ValueError("a percentile's fraction is in (0, 1]")
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
