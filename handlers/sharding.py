"""Shards of a broadcast (pure): how sendmessage splits an audience and what a shard carries.

A shard is the event of one asynchronous fan-out invocation, so it must fit
Lambda's asynchronous payload limit (``LAMBDA_ASYNC_PAYLOAD_BYTES``, 256 KB).
The message travels base64-encoded: its size is then known exactly (JSON may
escape a character into six bytes), and even the largest message API Gateway
accepts (128 KB, 175 KB encoded) leaves room for thousands of recipients. Each
recipient travels with its ``connectedAt`` (``[id, epoch ms]``), so the fan-out
can tell a stale id from one whose handshake is still in progress
(``connection_store.past_handshake``) as sendmessage itself would. A shard may
carry a ``key`` (the message's id and the shard's index: ``ledger``),
under which whoever posts it claims it first, so it is posted once.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_limits import LAMBDA_ASYNC_PAYLOAD_BYTES
from connection_store import Member

DEFAULT_SHARD_SIZE = 500
"""Recipients per fan-out invocation; template.yaml's ``ShardSize`` default (see BENCHMARKS.md)."""
MAX_SHARD_SIZE = 10_000


class BadShard(ValueError):
    """A fan-out event that is not a shard this code wrote."""


@dataclass(frozen=True)
class Shard:
    endpoint: str
    """The @connections endpoint the posts go to."""
    data: bytes
    recipients: list[Member]
    key: str = ""
    """The shard's ledger key; empty: not deduplicated."""


@dataclass(frozen=True)
class ShardSettings:
    fanout_function: str
    """Name or ARN of the fan-out function; empty: post everything from sendmessage."""
    shard_size: int
    ledger_table: str = ""
    """template.yaml's ``FanoutLedgerTable`` (``ledger``); empty: shards are not deduplicated."""

    @classmethod
    def from_environ(cls) -> ShardSettings:
        raw = os.environ.get("SHARD_SIZE", "").strip()
        size = int(raw) if raw else DEFAULT_SHARD_SIZE
        if not 1 <= size <= MAX_SHARD_SIZE:
            raise ValueError(f"SHARD_SIZE={size} is outside 1..{MAX_SHARD_SIZE}")
        return cls(
            os.environ.get("FANOUT_FUNCTION", "").strip(),
            size,
            os.environ.get("LEDGER_TABLE", "").strip(),
        )


def _recipient(member: Member) -> list[Any]:
    return [member.connection_id, member.connected_at_ms]


def encode(endpoint: str, data: bytes, recipients: Sequence[Member], key: str = "") -> bytes:
    shard: dict[str, Any] = {
        "endpoint": endpoint,
        "data": base64.b64encode(data).decode("ascii"),
        "recipients": [_recipient(member) for member in recipients],
    }
    if key:
        shard["key"] = key
    return json.dumps(shard, separators=(",", ":")).encode()


def _is_recipient(entry: object) -> bool:
    """``[connection id, connectedAt epoch ms]``, as ``encode`` writes it."""
    return (
        isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], int)
        and not isinstance(entry[1], bool)
    )


def decode(event: object) -> Shard:
    """The shard in a fan-out event; ``BadShard`` says what is wrong with anything else."""
    if not isinstance(event, dict):
        raise BadShard(f"a shard is a JSON object, not {type(event).__name__}")
    endpoint, data, recipients = event.get("endpoint"), event.get("data"), event.get("recipients")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        raise BadShard("shard has no endpoint URL")
    if not isinstance(data, str):
        raise BadShard("shard has no data")
    try:
        message = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadShard(f"shard data is not base64: {error}") from None
    if not isinstance(recipients, list) or not all(_is_recipient(r) for r in recipients):
        raise BadShard("shard recipients are not a list of [connection id, connectedAt ms]")
    key = event.get("key", "")
    if not isinstance(key, str):
        raise BadShard("shard key is not a string")
    return Shard(endpoint, message, [Member(cid, at) for cid, at in recipients], key)


def split(
    endpoint: str,
    data: bytes,
    recipients: Sequence[Member],
    shard_size: int,
    limit_bytes: int = LAMBDA_ASYNC_PAYLOAD_BYTES,
    message_id: str = "",
) -> list[bytes]:
    """Encoded shards of at most ``shard_size`` recipients and ``limit_bytes`` each, in order.

    With a ``message_id``, shard ``i`` carries the key ``{message_id}#{i}``.
    Raises ``ValueError`` when not even one recipient fits beside the message.
    """
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")

    def key(index: int) -> str:
        return f"{message_id}#{index}" if message_id else ""

    empty = len(encode(endpoint, data, [], key(len(recipients))))  # the longest key
    shards: list[bytes] = []
    start = 0
    while start < len(recipients):
        size, end = empty, start
        while end < len(recipients) and end - start < shard_size:
            entry = json.dumps(_recipient(recipients[end]), separators=(",", ":"))
            cost = len(entry) + (1 if end > start else 0)
            if size + cost > limit_bytes:
                break
            size += cost
            end += 1
        if end == start:
            raise ValueError(f"a {len(data)}-byte message leaves no room for a recipient")
        shards.append(encode(endpoint, data, recipients[start:end], key(len(shards))))
        start = end
    return shards
