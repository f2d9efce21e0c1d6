"""AWS list prices (us-east-1, on-demand, first tier) the cost estimate multiplies by.

Sources, transcribed on 2026-11-25 (re-check before quoting a figure; override
any price with ``fanbench report --price NAME=USD``):

* API Gateway WebSocket APIs — https://aws.amazon.com/api-gateway/pricing/ :
  $1.00 per million messages (first billion a month; messages sent *and*
  received, metered in 32 KB increments) and $0.25 per million connection-minutes.
* Lambda — https://aws.amazon.com/lambda/pricing/ : $0.20 per million requests;
  duration $0.0000166667 per GB-second on x86_64 and $0.0000133334 on arm64
  (first 6 / 7.5 billion GB-s a month). template.yaml deploys arm64
  (``Globals.Function.Architectures``), so the arm64 price is the default.
* DynamoDB on-demand — https://aws.amazon.com/dynamodb/pricing/on-demand/ :
  $0.625 per million write request units, $0.125 per million read request units
  (the prices since AWS halved on-demand throughput prices on 2024-11-01).

Free tiers are ignored: the estimate is the marginal cost of the traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

REGION = "us-east-1"
PRICES_TRANSCRIBED = "2026-11-25"
SOURCES = {
    "api_gateway": "https://aws.amazon.com/api-gateway/pricing/",
    "lambda": "https://aws.amazon.com/lambda/pricing/",
    "dynamodb": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
}
LAMBDA_X86_PER_GB_SECOND = 0.0000166667
LAMBDA_ARM64_PER_GB_SECOND = 0.0000133334


@dataclass(frozen=True)
class Prices:
    """USD prices; every field can be overridden by name."""

    api_gateway_per_million_messages: float = 1.00
    api_gateway_per_million_connection_minutes: float = 0.25
    lambda_per_million_requests: float = 0.20
    lambda_per_gb_second: float = LAMBDA_ARM64_PER_GB_SECOND
    dynamodb_per_million_write_request_units: float = 0.625
    dynamodb_per_million_read_request_units: float = 0.125

    @classmethod
    def names(cls) -> list[str]:
        return [field.name for field in fields(cls)]

    @classmethod
    def with_overrides(cls, pairs: list[str]) -> Prices:
        """The default prices with ``NAME=VALUE`` overrides; ValueError names a bad pair."""
        changes: dict[str, float] = {}
        for pair in pairs:
            name, separator, text = pair.partition("=")
            name = name.strip()
            if not separator:
                raise ValueError(
                    f"--price {pair!r}: expected NAME=USD, e.g. lambda_per_gb_second=0.0000166667"
                )
            if name not in cls.names():
                raise ValueError(
                    f"--price {pair!r}: unknown price {name!r}; known: {', '.join(cls.names())}"
                )
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"--price {pair!r}: {text.strip()!r} is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"--price {pair!r}: a price must be a finite number >= 0")
            changes[name] = value
        return replace(cls(), **changes)


@dataclass(frozen=True)
class Usage:
    """Billable quantities of one deployment over some stretch of traffic.

    Every cost fanbench states (a run's estimate, CloudWatch's measured counts, the
    capacity model, the benchmarks' Lambda figures) prices one of these with
    :func:`priced`, so a price is applied in exactly one place.
    """

    api_gateway_messages: float = 0.0
    connection_minutes: float = 0.0
    sendmessage_requests: float = 0.0
    sendmessage_gb_seconds: float = 0.0
    connection_lambda_requests: float = 0.0
    connection_lambda_gb_seconds: float = 0.0
    dynamodb_read_units: float = 0.0
    dynamodb_write_units: float = 0.0


def priced(usage: Usage, prices: Prices) -> dict[str, float]:
    """USD per line of the bill; the line names are the reports' breakdown keys."""
    p, per_million = prices, 1e-6
    return {
        "api_gateway_messages": usage.api_gateway_messages
        * p.api_gateway_per_million_messages
        * per_million,
        "api_gateway_connection_minutes": usage.connection_minutes
        * p.api_gateway_per_million_connection_minutes
        * per_million,
        "sendmessage_requests": usage.sendmessage_requests
        * p.lambda_per_million_requests
        * per_million,
        "sendmessage_compute": usage.sendmessage_gb_seconds * p.lambda_per_gb_second,
        "connection_lambda_requests": usage.connection_lambda_requests
        * p.lambda_per_million_requests
        * per_million,
        "connection_lambda_compute": usage.connection_lambda_gb_seconds * p.lambda_per_gb_second,
        "dynamodb_reads": usage.dynamodb_read_units
        * p.dynamodb_per_million_read_request_units
        * per_million,
        "dynamodb_writes": usage.dynamodb_write_units
        * p.dynamodb_per_million_write_request_units
        * per_million,
    }


def lambda_usd_per_million_sends(duration_ms: float, memory_gb: float, prices: Prices) -> float:
    """Lambda's part of a million invocations of ``duration_ms`` each: requests plus GB-seconds."""
    million = 1e6
    bill = priced(
        Usage(
            sendmessage_requests=million,
            sendmessage_gb_seconds=million * duration_ms / 1000 * memory_gb,
        ),
        prices,
    )
    return bill["sendmessage_requests"] + bill["sendmessage_compute"]
