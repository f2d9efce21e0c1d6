"""What ``fanbench run`` hands the Locust master for run.json."""

from __future__ import annotations

import json
from typing import Any

from loadtest import run_context

STATS = {"gateway": {"frames_out": 3}, "functions": {"SendMessageFunction": {"memory_mb": 1024}}}


def test_without_a_context_nothing_is_added() -> None:
    assert run_context.run_json_part(None) == {}
    assert run_context.run_json_part("") == {}


def test_a_local_stage_gets_its_statistics_at_write_time() -> None:
    asked: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        asked.append(url)
        return STATS

    context = {
        "scenario_file": {"source": "s.toml", "description": "d"},
        "stage": {"kind": "local", "config": {"auth_token": "<redacted>"}, "stats_url": "u"},
    }
    part = run_context.run_json_part(run_context.encode(context), fetch)
    assert asked == ["u"]
    assert part["scenario_file"] == {"source": "s.toml", "description": "d"}
    assert part["stage"] == {
        "kind": "local",
        "config": {"auth_token": "<redacted>"},
        "stats": STATS,
        "memory_mb": {"SendMessageFunction": 1024},
    }


def test_a_stage_that_cannot_answer_is_recorded_with_the_error() -> None:
    def fetch(_url: str) -> dict[str, Any]:
        raise OSError("connection refused")

    context = {"stage": {"kind": "local", "stats_url": "u"}}
    part = run_context.run_json_part(json.dumps(context), fetch)
    assert part["stage"] == {"kind": "local", "stats_error": "OSError: connection refused"}


def test_a_remote_target_says_so() -> None:
    assert run_context.run_json_part(json.dumps({})) == {"stage": {"kind": "remote"}}


def test_a_side_of_a_side_by_side_run_is_named_in_run_json() -> None:
    side = {"side": "B", "label": "optimized:PostConcurrency=2", "of": 2}
    part = run_context.run_json_part(json.dumps({"side_by_side": side}))
    assert part == {"side_by_side": side, "stage": {"kind": "remote"}}
