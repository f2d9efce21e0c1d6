"""AWS limits and protocol constants for the load generator, the stage and the reports.

The deployed handlers may import nothing but the standard library and boto3, so
they carry their own copy in ``handlers/aws_limits.py``; ``tests/test_limits.py``
holds every name here equal to the handlers' figure.

Sources: API Gateway quotas for WebSocket APIs, Lambda quotas, the DynamoDB
developer guide and API Gateway pricing (us-east-1); see ``docs/stage.md``.
"""

from __future__ import annotations

KIB = 1024

# API Gateway WebSocket API
MAX_MESSAGE_BYTES = 128 * KIB
"""Largest WebSocket message (all frames of it) API Gateway accepts."""
MAX_FRAME_BYTES = 32 * KIB
"""Largest single WebSocket frame API Gateway accepts."""
METERING_INCREMENT_BYTES = 32 * KIB
"""Messages are billed in 32 KB increments, in and out."""
INTEGRATION_TIMEOUT_S = 29.0
IDLE_TIMEOUT_S = 10 * 60.0
MAX_CONNECTION_DURATION_S = 2 * 60 * 60.0
NEW_CONNECTIONS_PER_S = 500
ACCOUNT_THROTTLE_RPS = 10_000
ACCOUNT_THROTTLE_BURST = 5_000

# WebSocket close codes API Gateway uses (RFC 6455 section 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_MESSAGE_TOO_BIG = 1009

# Lambda
LAMBDA_DEFAULT_TIMEOUT_S = 3.0
LAMBDA_DEFAULT_CONCURRENCY = 1_000
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * KIB
"""Largest request (and response) payload of a synchronous Invoke."""
LAMBDA_ASYNC_PAYLOAD_BYTES = 256 * KIB
"""Largest event of an asynchronous (``Event``) Invoke, as the quotas page long stated it.

AWS announced 1 MB for asynchronous invocations in October 2025; staying within
256 KB works under either limit."""
LAMBDA_ASYNC_RETRY_DELAYS_S = (60.0, 120.0)
"""A failed asynchronous invocation is retried twice: 1 minute, then 2 minutes later."""
LAMBDA_ASYNC_MAX_EVENT_AGE_S = 6 * 60 * 60.0
"""How long Lambda keeps retrying a throttled asynchronous event (the default maximum age)."""
LAMBDA_ASYNC_THROTTLE_RETRY_MAX_S = 5 * 60.0
"""Throttled events are retried from 1 s, doubling, up to this interval."""

# DynamoDB
SCAN_PAGE_BYTES = 1024 * KIB
BATCH_WRITE_MAX_ITEMS = 25

# The chat table's schema, as template.yaml declares it (tests assert they agree).
CONNECTION_KEY = "connectionId"
ROOM_ATTRIBUTE = "room"
ROOM_INDEX = "room-index"
TTL_ATTRIBUTE = "expiresAt"
TTL_MARGIN_S = 15 * 60.0
"""Kept past the 2 h maximum connection life before TTL may reclaim an item."""
