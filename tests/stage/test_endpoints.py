"""The ready line: what the stage process prints is what LocalStage reads back."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.stage.endpoints import READY_KEY, StageEndpoints


def test_a_ready_line_round_trips_every_field() -> None:
    endpoints = StageEndpoints(
        ws_url="ws://127.0.0.1:1/local", connections_url="http://127.0.0.1:2/local/@connections",
        callback_url="http://127.0.0.1:2/local", management_url="http://127.0.0.1:2",
        dynamodb_endpoint="http://127.0.0.1:3", table_name="t", variant="optimized",
        log_dir=Path("/tmp/logs"), wss_url="wss://127.0.0.1:4/local",
        https_callback_url="https://127.0.0.1:4/local", ca_file=Path("/tmp/ca.pem"),
        lambda_url="http://127.0.0.1:5", dynamodb_emulator="dynalite", tables=("t", "u"),
        template="template.yaml", callbacks="https", freeze=True,
        routes={"$connect": "ConnectFunction"}, unemulated_functions={"F": "an image"}, pid=42,
    )  # fmt: skip
    line = endpoints.ready_line()
    assert line.startswith(f'{{"{READY_KEY}"')
    assert StageEndpoints.from_ready(json.loads(line)[READY_KEY]) == endpoints


def test_keys_a_newer_stage_adds_are_ignored_and_missing_optional_ones_default() -> None:
    info = {
        "ws_url": "ws://h/local", "connections_url": "c", "callback_url": "b",
        "management_url": "m", "dynamodb_endpoint": "d", "table_name": "t",
        "variant": "baseline", "log_dir": "/tmp/x", "something_new": 1,
    }  # fmt: skip
    endpoints = StageEndpoints.from_ready(info)
    assert endpoints.log_dir == Path("/tmp/x")
    assert endpoints.ca_file is None
    assert endpoints.tables == ()
