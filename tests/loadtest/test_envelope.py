"""The chat envelope: round trip, padding, and refusal of anything that is not one."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.envelope import MAGIC, PAD_CHAR, Envelope, decode, encode, sendmessage_frame

SAMPLE = Envelope(
    client=17, seq=42, intended_ns=1_700_000_000_123_456_789, sent_ns=1_700_000_000_223_456_789
)


def test_round_trip() -> None:
    assert decode(encode(SAMPLE)) == SAMPLE


def test_unpadded_form() -> None:
    assert encode(SAMPLE) == f"{MAGIC}:17:42:1700000000123456789:1700000000223456789:"


def test_padding_reaches_the_requested_size() -> None:
    text = encode(SAMPLE, size=256)
    assert len(text) == 256
    assert text.endswith(PAD_CHAR * (256 - len(encode(SAMPLE))))
    assert decode(text) == SAMPLE


def test_a_size_below_the_head_adds_nothing() -> None:
    assert encode(SAMPLE, size=5) == encode(SAMPLE)
    assert encode(SAMPLE, size=len(encode(SAMPLE))) == encode(SAMPLE)


@given(
    st.builds(
        Envelope,
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**63 - 1),
        st.integers(0, 2**63 - 1),
    ),
    st.integers(0, 4096),
)
def test_round_trip_any_envelope_and_size(envelope: Envelope, size: int) -> None:
    text = encode(envelope, size)
    assert len(text) == max(size, len(encode(envelope)))
    assert decode(text) == envelope


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        '{"message": "Internal server error", "connectionId": "abc", "requestId": "x"}',
        '{"error": "throttled"}',
        "fb1",
        "fb1:",
        "fb1:1:2:3",
        "fb1:1:2:3:4",  # no trailing separator: too few parts
        "fb1:a:b:c:d:",
        "fb1:1:2:3:x:",
        "fb1:1::3:4:",
        "fb2:1:2:3:4:",
        "FB1:1:2:3:4:",
        " fb1:1:2:3:4:",
    ],
)
def test_non_envelopes_decode_to_none(text: str) -> None:
    assert decode(text) is None


def test_padding_may_hold_anything() -> None:
    assert decode(encode(SAMPLE) + "a:b:c") == SAMPLE


def test_sendmessage_frame_is_json_carrying_the_envelope() -> None:
    text = encode(SAMPLE, size=128)
    frame = json.loads(sendmessage_frame(text))
    assert frame == {"action": "sendmessage", "message": text}
    assert decode(frame["message"]) == SAMPLE


def test_the_envelope_needs_no_json_escaping() -> None:
    text = encode(SAMPLE, size=64)
    assert json.dumps(text) == f'"{text}"'
