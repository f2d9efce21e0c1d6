"""Refused connects and error frames are counted as failures, never as loss of other messages.

One real swarm (10 users, optimized) on a stage where 5 % of Lambda invocations
fail before the handler runs. A failed ``$connect`` refuses the handshake (502);
a failed ``sendmessage`` answers its sender with ``Internal server error`` and
delivers nothing. The fault seed makes the stage's first invocation fail, and a
swarm's first invocation is always a ``$connect``, so a refused connect is certain.
``fanbench run``'s terminal summary must say so too, not leave it to run.json.

Why Lambda errors: the stage has no connect-rate throttle, and a ``$connect``
token refuses every user of a swarm (they share one token), while this refuses
some users and admits the rest in one run, which is the case to account for.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.reliability.conftest import SwarmQueue
from tests.reliability.support import INTERNAL_SERVER_ERROR, lost_in, sender_accounts

pytestmark = [pytest.mark.swarms("lambda-errors"), pytest.mark.timeout(600)]

USERS = 10


def test_refused_connects_are_counted_as_failures_and_join_no_audience(
    swarms: SwarmQueue,
) -> None:
    result = swarms.result("lambda-errors")
    run = result.run
    print(result.figures())
    failed = run.errors["kind"] == "connect_failed"
    refused = int(np.sum(failed))
    assert refused >= 1, "the fault seed should have refused the first connect"
    assert refused == result.gateway("connect_rejected")
    assert result.summary.errors_by_kind["connect_failed"] == refused
    assert all("HTTP 502" in detail for detail in run.errors["detail"][failed])
    refused_clients = {int(c) for c in run.errors["client"][failed]}
    admitted = {int(c) for c in run.membership["client"]}
    # A refused user is in no audience (nobody's expected recipient) and sends nothing.
    assert not admitted & refused_clients
    assert len(admitted) == USERS - refused
    assert not {int(c) for c in run.sends["client"]} & refused_clients
    assert result.counts.expected > 0


def test_error_frames_lose_only_their_own_message(swarms: SwarmQueue) -> None:
    result = swarms.result("lambda-errors")
    run = result.run
    counts = result.counts
    frames = counts.error_frames
    assert frames >= 1, result.figures()
    assert frames == result.gateway("error_frames")
    details = run.errors["detail"][run.errors["kind"] == "error_frame"]
    assert {json.loads(detail)["message"] for detail in details} == {INTERNAL_SERVER_ERROR}
    stats = result.stage_stats["lambda"]
    assert stats["injected_errors"] >= frames + int(np.sum(run.errors["kind"] == "connect_failed"))

    accounts = sender_accounts(run)
    print({client: account for client, account in accounts.items() if account.error_frames})
    # A failed invocation loses its whole message, nothing else does: no message lost
    # part of its audience, and every message that reached nobody answered its sender
    # with an error frame (as did failed messages that had no audience yet).
    for client, account in accounts.items():
        assert account.partial == 0, (client, account)
        assert account.none <= account.error_frames, (client, account)
        assert account.error_frames <= account.none + account.audienceless, (client, account)
    assert counts.lost == lost_in(run, "none") > 0, result.figures()


def test_a_refused_connect_is_reported_without_a_traceback(swarms: SwarmQueue) -> None:
    result = swarms.result("lambda-errors").check()
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]


def test_connect_failures_appear_in_the_summary_lines(swarms: SwarmQueue) -> None:
    result = swarms.result("lambda-errors").check()
    run = result.run
    refused = int(np.sum(run.errors["kind"] == "connect_failed"))
    assert refused >= 1
    line = next(line for line in result.stdout.splitlines() if "connect failures" in line)
    assert f"connect failures {refused} (first: " in line
    assert "HTTP 502" in line
    assert f"connections {len(run.membership['client'])}," in line
    assert f"unexpected receipts {result.counts.unexpected}" in line
