"""Shards of a broadcast (pure): sizes, the 256 KB event limit, the encoding, settings."""

from __future__ import annotations

import json

import pytest

import sharding
from aws_limits import LAMBDA_ASYNC_PAYLOAD_BYTES, MAX_MESSAGE_BYTES
from connection_store import Member
from tests.handlers.support import new_connection_id

ENDPOINT = "https://abcdef1234.execute-api.us-east-1.amazonaws.com/prod"
CONNECTED_AT_MS = 1_764_470_000_000
"""An epoch-ms connect time of today's width (13 digits), which the shard sizing must count."""


def members(count: int) -> list[Member]:
    return [Member(new_connection_id(), CONNECTED_AT_MS + n) for n in range(count)]


def recipients_of(shards: list[bytes]) -> list[Member]:
    return [m for shard in shards for m in sharding.decode(json.loads(shard)).recipients]


def test_split_keeps_every_recipient_once_in_order_and_caps_the_count() -> None:
    ids = members(1_001)
    shards = sharding.split(ENDPOINT, b"hi", ids, 250)
    assert [len(sharding.decode(json.loads(s)).recipients) for s in shards] == [250] * 4 + [1]
    assert recipients_of(shards) == ids


def test_the_largest_message_still_fits_the_async_event_limit() -> None:
    """A 128 KB message of characters JSON would escape six-fold: base64 keeps it in bounds."""
    message = ("\x01" * MAX_MESSAGE_BYTES).encode()
    ids = members(12_000)
    shards = sharding.split(ENDPOINT, message, ids, 10_000)
    assert all(len(shard) <= LAMBDA_ASYNC_PAYLOAD_BYTES for shard in shards)
    assert len(shards) > 2  # the limit, not the shard size, set the split
    assert recipients_of(shards) == ids
    entry = json.dumps([ids[0].connection_id, ids[0].connected_at_ms], separators=(",", ":"))
    full = len(shards[0]) + len(entry) + 1
    assert full > LAMBDA_ASYNC_PAYLOAD_BYTES  # each shard is as full as the limit allows
    decoded = sharding.decode(json.loads(shards[0]))
    assert decoded.data == message
    assert decoded.endpoint == ENDPOINT


def test_split_honours_a_smaller_limit_exactly() -> None:
    ids = [Member(f"id{n:04d}", CONNECTED_AT_MS) for n in range(100)]
    empty = len(sharding.encode(ENDPOINT, b"x", []))
    entry = f'["id0000",{CONNECTED_AT_MS}]'
    limit = empty + 10 * len(entry) + 9  # ten recipients and their nine commas
    shards = sharding.split(ENDPOINT, b"x", ids, 50, limit)
    assert all(len(s) <= limit for s in shards)
    assert len(sharding.decode(json.loads(shards[0])).recipients) == 10


def test_split_refuses_what_cannot_fit_and_nonsense_sizes() -> None:
    with pytest.raises(ValueError, match="no room"):
        sharding.split(ENDPOINT, b"x" * 300, [Member("a", 1)], 10, 200)
    with pytest.raises(ValueError, match="at least 1"):
        sharding.split(ENDPOINT, b"x", [Member("a", 1)], 0)
    assert sharding.split(ENDPOINT, b"x", [], 10) == []


def test_encode_decode_round_trip_bytes_exactly() -> None:
    data = "h\u00e9llo \U0001f44b \x00".encode()
    recipients = [Member("a", CONNECTED_AT_MS), Member("b", 0)]
    shard = sharding.decode(json.loads(sharding.encode(ENDPOINT, data, recipients)))
    assert shard == sharding.Shard(ENDPOINT, data, recipients)


@pytest.mark.parametrize(
    ("event", "complaint"),
    [
        ([], "JSON object"),
        ({"data": "aGk=", "recipients": []}, "endpoint"),
        ({"endpoint": "ftp://x", "data": "aGk=", "recipients": []}, "endpoint"),
        ({"endpoint": ENDPOINT, "recipients": []}, "no data"),
        ({"endpoint": ENDPOINT, "data": "not base64!", "recipients": []}, "base64"),
        ({"endpoint": ENDPOINT, "data": "aGk=", "recipients": "abc"}, "recipients"),
        ({"endpoint": ENDPOINT, "data": "aGk=", "recipients": [1]}, "recipients"),
        ({"endpoint": ENDPOINT, "data": "aGk=", "recipients": ["abc"]}, "recipients"),
        ({"endpoint": ENDPOINT, "data": "aGk=", "recipients": [["abc"]]}, "recipients"),
        ({"endpoint": ENDPOINT, "data": "aGk=", "recipients": [["abc", "1"]]}, "recipients"),
        ({"endpoint": ENDPOINT, "data": "aGk=", "recipients": [["abc", 1.5]]}, "recipients"),
        ({"endpoint": ENDPOINT, "data": "aGk=", "recipients": [["abc", True]]}, "recipients"),
        ({"endpoint": ENDPOINT, "data": "aGk=", "recipients": [[1, 1]]}, "recipients"),
    ],
)
def test_decode_refuses_anything_but_a_shard(event: object, complaint: str) -> None:
    with pytest.raises(sharding.BadShard, match=complaint):
        sharding.decode(event)


def test_shard_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHARD_SIZE", raising=False)
    monkeypatch.delenv("FANOUT_FUNCTION", raising=False)
    assert sharding.ShardSettings.from_environ() == sharding.ShardSettings(
        "", sharding.DEFAULT_SHARD_SIZE
    )
    monkeypatch.setenv("SHARD_SIZE", "250")
    monkeypatch.setenv("FANOUT_FUNCTION", "stack-FanoutFunction-X")
    assert sharding.ShardSettings.from_environ() == sharding.ShardSettings(
        "stack-FanoutFunction-X", 250
    )
    monkeypatch.setenv("SHARD_SIZE", "0")
    with pytest.raises(ValueError, match="SHARD_SIZE=0"):
        sharding.ShardSettings.from_environ()
