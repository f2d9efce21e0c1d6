"""Scenario knobs: audiences and the redacted metadata."""

from __future__ import annotations

import json

from fanbench_common.scenario import GLOBAL_AUDIENCE, Scenario


def test_room_size_zero_is_everyone() -> None:
    scenario = Scenario(room_size=0)
    assert {scenario.audience_for(n) for n in range(150)} == {GLOBAL_AUDIENCE}
    assert GLOBAL_AUDIENCE == "*"


def test_rooms_of_three() -> None:
    scenario = Scenario(room_size=3)
    rooms = [scenario.audience_for(n) for n in range(7)]
    assert rooms[0] == rooms[1] == rooms[2]
    assert rooms[3] == rooms[4] == rooms[5]
    assert len({rooms[0], rooms[3], rooms[6]}) == 3
    assert GLOBAL_AUDIENCE not in rooms


def test_a_room_is_named_by_seat_alone() -> None:
    """No process in the name: seats are global, so one room can span processes and hosts."""
    scenario = Scenario(room_size=10_000)
    assert scenario.audience_for(0) == scenario.audience_for(9_999) == "r0"
    assert scenario.audience_for(10_000) == "r1"


def test_negative_room_size_is_everyone() -> None:
    assert Scenario(room_size=-1).audience_for(5) == GLOBAL_AUDIENCE


def test_metadata_redacts_the_token() -> None:
    scenario = Scenario(room_size=4, message_bytes=512, token="s3cret-token", variant="baseline")
    meta = scenario.as_metadata()
    assert meta["token"] == "<redacted>"
    assert "s3cret-token" not in json.dumps(meta)
    assert (meta["room_size"], meta["message_bytes"], meta["variant"]) == (4, 512, "baseline")
    assert scenario.token == "s3cret-token"  # the scenario itself keeps it


def test_metadata_without_a_token_says_so() -> None:
    meta = Scenario().as_metadata()
    assert meta["token"] == ""
    assert meta["settle_s"] == 1.0
    assert set(meta) == {
        "room_size", "message_bytes", "send_interval_s", "warmup_s", "drain_s", "drain_limit_s",
        "settle_s", "run_dir", "variant", "token",
    }  # fmt: skip
