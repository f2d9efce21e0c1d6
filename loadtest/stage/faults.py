"""Fault injection decisions (pure: a seeded RNG in, a decision out).

Each fault is one knob; the gateway and the Lambda runtime only act on the
decisions made here, so every fault's arithmetic can be unit-tested.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import NamedTuple


@dataclass(frozen=True)
class Faults:
    post_latency_ms: float = 0.0
    """Fixed delay before each @connections POST is answered."""
    post_latency_jitter_ms: float = 0.0
    """Extra uniform random delay, 0..jitter, on top of the fixed one."""
    post_failure_rate: float = 0.0
    """Share of POSTs answered 500 (nothing delivered)."""
    throttle_rate: float = 0.0
    """Share of POSTs answered 429 LimitExceededException (nothing delivered)."""
    drop_rate: float = 0.0
    """Share of POSTs answered 200 whose frame is silently never sent."""
    duplicate_rate: float = 0.0
    """Share of POSTs answered 200 whose frame is sent twice."""
    lost_disconnect_rate: float = 0.0
    """Share of closes whose ``$disconnect`` event never reaches the handler."""
    lambda_error_rate: float = 0.0
    """Share of invocations that fail before the handler runs."""
    cold_start_ms: float = 0.0
    """Extra delay when an execution environment starts."""
    seed: int | None = None

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name.endswith("_rate") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{spec.name} must be within 0..1, got {value}")
            if spec.name.endswith("_ms") and value < 0:
                raise ValueError(f"{spec.name} must not be negative, got {value}")
        if self.post_failure_rate + self.throttle_rate + self.drop_rate + self.duplicate_rate > 1:
            raise ValueError("post fault rates add up to more than 1")

    @property
    def any_post_fault(self) -> bool:
        return any(
            (
                self.post_latency_ms,
                self.post_latency_jitter_ms,
                self.post_failure_rate,
                self.throttle_rate,
                self.drop_rate,
                self.duplicate_rate,
            )
        )


class PostDecision(NamedTuple):
    delay_s: float
    status: int
    """200, 500 or 429."""
    copies: int
    """Frames to send on a 200: 0 (silent drop), 1, or 2 (duplicate)."""


CLEAN_POST = PostDecision(0.0, 200, 1)


def decide_post(faults: Faults, rng: random.Random) -> PostDecision:
    """What happens to one @connections POST. One draw picks among exclusive outcomes."""
    if not faults.any_post_fault:
        return CLEAN_POST
    delay_ms = faults.post_latency_ms
    if faults.post_latency_jitter_ms:
        delay_ms += rng.uniform(0.0, faults.post_latency_jitter_ms)
    draw = rng.random()
    for rate, decision in (
        (faults.post_failure_rate, (500, 0)),
        (faults.throttle_rate, (429, 0)),
        (faults.drop_rate, (200, 0)),
        (faults.duplicate_rate, (200, 2)),
    ):
        if draw < rate:
            return PostDecision(delay_ms / 1000, *decision)
        draw -= rate
    return PostDecision(delay_ms / 1000, 200, 1)


def lose_disconnect(faults: Faults, rng: random.Random) -> bool:
    return faults.lost_disconnect_rate > 0 and rng.random() < faults.lost_disconnect_rate


def fail_invocation(faults: Faults, rng: random.Random) -> bool:
    return faults.lambda_error_rate > 0 and rng.random() < faults.lambda_error_rate
