"""2 % transient post failures (500) and 2 % throttles (429), end to end, both variants.

Three real swarms on the local stage (10 users, 10 s, one message per user every
0.5 s, fault seed 7), each measured by the suite's own loss accounting:

* optimized: retries 429/5xx itself inside the Lambda deadline → loses nothing;
* baseline with the SDK's defaults: botocore's standard retry mode already makes 3
  attempts for 429/5xx, so a delivery is lost only when all 3 fail (0.04³ ≈ 6e-5);
* baseline with SDK retries off (``AWS_MAX_ATTEMPTS=1``, which boto3 honours): one
  attempt, so it loses about the injected 4 % share.
"""

from __future__ import annotations

import math

import pytest

from reports.stats import wilson_interval
from tests.reliability.conftest import SwarmQueue
from tests.reliability.support import INJECTED_POST_FAULT_SHARE, SwarmResult

pytestmark = [
    pytest.mark.swarms(
        "optimized-post-faults", "baseline-post-faults", "baseline-post-faults-no-sdk-retries"
    ),
    pytest.mark.timeout(600),
]

USERS = 10
SDK_ATTEMPTS = 3
"""botocore's standard retry mode: 3 attempts in all for throttling and 5xx errors."""


def binomial_bound(trials: int, p: float, tail: float = 1e-6) -> int:
    """The smallest k with P(X > k) < ``tail`` for X ~ Binomial(trials, p)."""
    below = 0.0
    for k in range(trials + 1):
        below += math.comb(trials, k) * p**k * (1 - p) ** (trials - k)
        if 1 - below < tail:
            return k
    return trials


def assert_faults_were_injected(result: SwarmResult) -> None:
    """The stage answered enough posts with 500 and 429 for the figures to mean something."""
    counts = result.counts
    assert counts.messages >= USERS * 10, result.figures()
    assert counts.expected >= counts.messages * (USERS - 1) * 0.8, result.figures()
    assert result.gateway("api_post_500") >= 5, result.stage_stats["gateway"]
    assert result.gateway("api_post_429") >= 5, result.stage_stats["gateway"]


def test_optimized_loses_no_delivery(swarms: SwarmQueue) -> None:
    result = swarms.result("optimized-post-faults")
    print(result.figures())
    assert_faults_were_injected(result)
    counts = result.counts
    assert counts.lost == 0, result.figures()
    assert counts.delivered == counts.expected
    assert counts.error_frames == 0
    assert result.gateway("api_post_200") >= counts.delivered


def test_baseline_with_sdk_retries_loses_only_what_three_failed_attempts_lose(
    swarms: SwarmQueue,
) -> None:
    result = swarms.result("baseline-post-faults")
    print(result.figures())
    assert_faults_were_injected(result)
    counts = result.counts
    all_attempts_fail = INJECTED_POST_FAULT_SHARE**SDK_ATTEMPTS
    # No more loss than three independent failed attempts explain ...
    bound = binomial_bound(counts.expected, all_attempts_fail)
    assert counts.lost <= bound, (result.figures(), bound)
    # ... and clearly less than the injected share: the SDK's retries did the work.
    _, high = wilson_interval(counts.lost, counts.expected)
    assert high < INJECTED_POST_FAULT_SHARE, result.figures()


def test_baseline_without_sdk_retries_loses_the_injected_share(swarms: SwarmQueue) -> None:
    result = swarms.result("baseline-post-faults-no-sdk-retries")
    print(result.figures())
    assert_faults_were_injected(result)
    counts = result.counts
    low, high = wilson_interval(counts.lost, counts.expected)
    assert low <= INJECTED_POST_FAULT_SHARE <= high, result.figures()
    # One attempt per post: every post the stage failed is a delivery that never came,
    # and nothing else was lost (a few failed posts went to users that were still
    # completing their handshake, which the accounting rightly does not expect).
    failed = result.gateway("api_post_500") + result.gateway("api_post_429")
    assert counts.lost <= failed
    assert counts.lost >= failed - USERS, (counts.lost, failed)
