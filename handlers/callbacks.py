"""The @connections management API: clients, error classification, retried posts."""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from deadline import CALL_BUDGETS_S, call_budget_s, timeouts_s

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    """The connection no longer exists: its id is stale and should be deleted."""
    RETRYABLE = "retryable"
    """429 throttling or a 5xx: worth another try while time allows."""
    FAILED = "failed"
    """Will not succeed on retry (413, 400, 403, ...)."""


THROTTLE_CODES = frozenset({"LimitExceededException", "ThrottlingException", "TooManyRequests"})


def classify_error(error: ClientError) -> Outcome:
    """Map a failed post to an outcome.

    Typed ``GoneException`` and *any* 410 both mean gone: behind some proxies and
    emulators the error type header is missing and boto3 raises a bare
    ``ClientError`` with code ``'410'``.
    """
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "GoneException" or status == 410 or code == "410":
        return Outcome.GONE
    if code in THROTTLE_CODES or status == 429 or status >= 500:
        return Outcome.RETRYABLE
    return Outcome.FAILED


def is_throttle(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in THROTTLE_CODES or status == 429


def backoff_s(attempt: int, rng: random.Random, base_s: float = 0.02, cap_s: float = 1.0) -> float:
    """Full-jitter exponential backoff (AWS Architecture Blog, 2015)."""
    return rng.uniform(0.0, min(cap_s, base_s * 2**attempt))


_clients: dict[tuple[str, float], ApiGatewayManagementApiClient] = {}
_clients_lock = threading.Lock()


def management_client(
    endpoint: str, pool_size: int, budget_s: float = CALL_BUDGETS_S[0]
) -> ApiGatewayManagementApiClient:
    """One client per endpoint and call budget per execution environment, reused while warm.

    Retries are ours (``post_with_retry``), so botocore makes a single attempt;
    its connect and read timeouts add up to ``budget_s`` (see ``deadline``).
    """
    key = (endpoint, budget_s)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            connect_s, read_s = timeouts_s(budget_s)
            config = Config(
                max_pool_connections=max(10, pool_size),
                connect_timeout=connect_s,
                read_timeout=read_s,
                retries={"mode": "standard", "total_max_attempts": 1},
            )
            client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)
            _clients[key] = client
        return client


ClientForBudget = Callable[[float], "ApiGatewayManagementApiClient"]
"""Given a call budget in seconds, a client whose timeouts fit it."""


class PostResult(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    THROTTLED = "throttled"
    """Still throttled when attempts or time ran out."""
    FAILED = "failed"


def post_with_retry(
    client_for: ClientForBudget,
    connection_id: str,
    data: bytes,
    deadline: float,
    max_attempts: int,
    rng: random.Random,
) -> PostResult:
    """Post once, retrying 429/5xx/transport errors with jittered backoff until ``deadline``.

    Every attempt, the first included, starts only if a call budget still fits
    before ``deadline`` and runs on a client whose timeouts fit that budget, so
    no attempt outlives the deadline by more than scheduling noise. Otherwise
    every recipient waiting for a pool worker would make one more call after the
    deadline, and a large throttled audience would run the invocation into
    Lambda's timeout, losing the stale-id cleanup and the metrics line. A post
    never attempted is ``FAILED``.
    """
    throttled = False
    for attempt in range(max_attempts):
        budget_s = call_budget_s(deadline - time.monotonic())
        if budget_s is None:
            break
        try:
            client_for(budget_s).post_to_connection(ConnectionId=connection_id, Data=data)
            return PostResult.DELIVERED
        except ClientError as error:
            outcome = classify_error(error)
            if outcome is Outcome.GONE:
                return PostResult.GONE
            if outcome is Outcome.FAILED:
                return PostResult.FAILED
            throttled = is_throttle(error)
        except BotoCoreError:
            throttled = False
        pause = backoff_s(attempt, rng)
        if attempt + 1 == max_attempts or time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
    return PostResult.THROTTLED if throttled else PostResult.FAILED
