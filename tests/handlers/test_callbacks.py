"""``callbacks.post_with_retry`` against the @connections stub: backoff, transport
errors, and attempts that fit the time left before the deadline."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any, cast

import pytest

from callbacks import PostResult, management_client, post_with_retry
from tests.handlers.support import (
    OK,
    THROTTLED,
    ConnectionsStub,
    Reply,
    new_connection_id,
)

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient


class UpperBound(random.Random):
    """Backoff always at its cap, so the pauses are known."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Timed:
    """Hands out the real client for a budget; records each attempt's start, end and budget."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.attempts: list[tuple[float, float]] = []
        self.ends: list[float] = []

    def __call__(self, budget_s: float) -> ApiGatewayManagementApiClient:
        self.attempts.append((time.monotonic(), budget_s))
        return cast("ApiGatewayManagementApiClient", self._Attempt(self, budget_s))

    class _Attempt:
        def __init__(self, timed: Timed, budget_s: float) -> None:
            self.timed = timed
            self.client = management_client(timed.endpoint, 4, budget_s)

        def post_to_connection(self, **kwargs: Any) -> Any:
            try:
                return self.client.post_to_connection(**kwargs)
            finally:
                self.timed.ends.append(time.monotonic())


def test_backs_off_between_attempts(aws_env: None, stub: ConnectionsStub) -> None:
    target = new_connection_id()
    stub.script(target, THROTTLED, THROTTLED, OK)
    timed = Timed(stub.url)

    result = post_with_retry(timed, target, b"m", time.monotonic() + 10, 5, UpperBound())

    assert result is PostResult.DELIVERED
    starts = [at for at, _ in timed.attempts]
    assert len(starts) == len(timed.ends) == 3
    # Between one attempt's answer and the next attempt, full jitter at its cap:
    # 0.02 s, then 0.04 s.
    assert starts[1] - timed.ends[0] >= 0.02
    assert starts[2] - timed.ends[1] >= 0.04


def test_a_transport_error_is_retried(aws_env: None, stub: ConnectionsStub) -> None:
    """A read timeout (``ReadTimeoutError``, a ``BotoCoreError``) is worth another try."""
    target = new_connection_id()
    stub.script(target, Reply(200, delay_s=0.6), OK)
    short = cast("Any", lambda budget_s: management_client(stub.url, 4, 0.3))

    result = post_with_retry(short, target, b"m", time.monotonic() + 10, 3, random.Random(1))

    assert result is PostResult.DELIVERED
    assert len(stub.posts_to(target)) == 2


def test_every_attempt_fits_before_the_deadline(aws_env: None, stub: ConnectionsStub) -> None:
    """A recipient that never answers costs at most the time left, not 2 s + 5 s a try."""
    target = new_connection_id()
    stub.script(target, Reply(200, delay_s=3.0))
    timed = Timed(stub.url)
    deadline = time.monotonic() + 1.2

    result = post_with_retry(timed, target, b"m", deadline, 5, random.Random(1))
    returned = time.monotonic()

    assert result is PostResult.FAILED
    assert timed.attempts, "it should have tried"
    for started, budget_s in timed.attempts:
        assert started + budget_s <= deadline
    assert returned - deadline < 0.25, f"returned {returned - deadline:.2f} s past the deadline"


def test_no_attempt_when_no_budget_fits(aws_env: None, stub: ConnectionsStub) -> None:
    target = new_connection_id()
    timed = Timed(stub.url)

    result = post_with_retry(timed, target, b"m", time.monotonic() + 0.05, 5, random.Random(1))

    assert result is PostResult.FAILED
    assert timed.attempts == []
    assert stub.posts() == []


@pytest.mark.parametrize("budget_s", [7.0, 1.0, 0.1])
def test_management_clients_make_one_attempt_within_their_budget(
    aws_env: None, stub: ConnectionsStub, budget_s: float
) -> None:
    client = management_client(stub.url, 32, budget_s)
    config: Any = client.meta.config
    assert config.connect_timeout + config.read_timeout == pytest.approx(budget_s)
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert config.max_pool_connections == 32
    assert management_client(stub.url, 32, budget_s) is client
