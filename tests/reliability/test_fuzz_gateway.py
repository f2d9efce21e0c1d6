"""Bad input: a fuzzer drives the gateway while a normal swarm runs on the same stage.

A real ``fanbench run --target`` swarm (10 users, optimized handler) chats on a
local stage while hypothesis sends malformed, binary, oversized, deeply nested,
non-UTF-8 and unmatched-route frames, each on its own connection. Every bad
frame must get AWS's behaviour:

* binary frame → close 1003; a frame over 32 KB → close 1009;
* text that is not UTF-8 → close 1007;
* text that selects no route (not JSON, no or another ``action``, ``SendMessage``) →
  the ``$default`` route's reply;
* a ``sendmessage`` body that is not a JSON object with a string ``message`` → the
  optimized handler's ``{"error": "BadRequest", ...}`` frame, to the sender only.

Then: the swarm lost nothing and saw no frame but its own chat (nothing invalid was
broadcast), the stage counted exactly the closes the fuzzer provoked, and it still
accepts connections and delivers.
"""

from __future__ import annotations

import enum
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection

from fanbench_common.limits import CLOSE_MESSAGE_TOO_BIG, CLOSE_UNSUPPORTED_DATA, MAX_FRAME_BYTES
from fanbench_common.rundir import read_run
from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from reports.analysis import analyze
from tests.reliability.support import (
    DEFAULT_HINT,
    chat,
    finish_swarm,
    is_envelope,
    open_ws,
    recv_until,
    start_swarm,
    stop_process_tree,
    wait_for,
)
from tests.stage.support import expect_close

CLOSE_INVALID_UTF8 = 1007
SWARM_USERS = 10
NEAR_RECURSION_LIMIT = sys.getrecursionlimit() // 2
FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class Expect(enum.Enum):
    DEFAULT_REPLY = "default reply"
    BAD_REQUEST = "BadRequest error frame"
    CLOSE_1003 = "close 1003"
    CLOSE_1007 = "close 1007"
    CLOSE_1009 = "close 1009"
    VALID_CHAT = "broadcast"


def nesting(value: object) -> int:
    """How deeply JSON arrays and objects nest in ``value`` (iterative: any depth)."""
    deepest, stack = 0, [(value, 0)]
    for _ in range(1_000_000):
        if not stack:
            return deepest
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack += [(child, depth + 1) for child in item.values()]
        elif isinstance(item, list):
            stack += [(child, depth + 1) for child in item]
    raise AssertionError("too many JSON values to walk")


def expected_for_text(text: str) -> set[Expect]:
    """What API Gateway (route selection on ``$request.body.action``) and the optimized
    handler may do with one text frame.

    A body nested about as deeply as Python's recursion limit is JSON or not depending on
    how deep the parser's caller already is (the stage's router runs deeper than this
    test), so near that limit both readings are right: ``$default`` or ``BadRequest``.
    """
    if len(text.encode()) > MAX_FRAME_BYTES:
        return {Expect.CLOSE_1009}
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return {Expect.DEFAULT_REPLY}
    if not isinstance(body, dict) or body.get("action") != "sendmessage":
        return {Expect.DEFAULT_REPLY}
    message = body.get("message")
    if isinstance(message, str):
        try:
            message.encode()
        except UnicodeEncodeError:
            return {Expect.BAD_REQUEST}
        return {Expect.VALID_CHAT}
    if nesting(body) > NEAR_RECURSION_LIMIT:
        return {Expect.DEFAULT_REPLY, Expect.BAD_REQUEST}
    return {Expect.BAD_REQUEST}


# -- strategies -------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
ROUTE_LOOKALIKES = [
    "SendMessage", "SENDMESSAGE", "sendMessage", "sendmessage ", " sendmessage", "send message",
    "sendmessage\u0000", "$default", "$connect", "$disconnect", "", "default",
]  # fmt: skip


def _nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


bad_chat_bodies = st.one_of(
    # a message of the wrong type
    json_values.filter(lambda v: not isinstance(v, str)).map(
        lambda v: json.dumps({"action": "sendmessage", "message": v})
    ),
    # no message at all
    st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in ("action", "message")),
        json_values,
        max_size=3,
    ).map(lambda extra: json.dumps({"action": "sendmessage", **extra})),
    # deeply nested (past Python's recursion limit it is not JSON to the router either)
    st.integers(1, 5_000).map(lambda d: '{"action":"sendmessage","message":' + _nested(d) + "}"),
    # a lone surrogate, escaped: valid JSON, valid UTF-8 on the wire, not a valid string
    st.text(max_size=10).map(
        lambda s: '{"action":"sendmessage","message":' + json.dumps(s)[:-1] + '\\ud800"}'
    ),
    # large, under the 32 KB frame limit, still not a string
    st.integers(1_000, 30_000).map(
        lambda n: json.dumps({"action": "sendmessage", "message": ["x" * n]})
    ),
)
unmatched_text = st.one_of(
    st.text(max_size=300),
    json_values.map(json.dumps),
    st.sampled_from(ROUTE_LOOKALIKES).map(lambda a: json.dumps({"action": a, "message": "hi"})),
    json_values.filter(lambda v: v != "sendmessage").map(
        lambda a: json.dumps({"action": a, "message": "hi"})
    ),
    st.integers(1, 20_000).map(lambda d: "[" * d),
    st.integers(1, 5_000).map(lambda d: _nested(d, '{"action":"sendmessage"}')),
    st.integers(1_000, MAX_FRAME_BYTES - 1).map(lambda n: "{" + "x" * n),
)
INVALID_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80"]


# -- the handlers alone: malformed events and bodies -------------------------------------

not_a_caller_id = json_values.filter(lambda v: not (isinstance(v, str) and v))
events_without_a_caller = st.one_of(
    json_values.filter(lambda v: not isinstance(v, dict)),
    st.dictionaries(st.text(max_size=12).filter(lambda k: k != "requestContext"), json_values,
                    max_size=3),
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda c: {"requestContext": c}),
    st.builds(
        lambda cid, rest, body: {"requestContext": {**rest, "connectionId": cid}, "body": body},
        not_a_caller_id, st.dictionaries(st.text(max_size=12), json_values, max_size=3),
        st.one_of(st.text(max_size=50), bad_chat_bodies),
    ),
)  # fmt: skip


@settings(FUZZ_SETTINGS, max_examples=100)
@given(event=events_without_a_caller)
def test_every_handler_answers_an_event_without_a_caller_with_a_clear_400(event: Any) -> None:
    """No AWS call is made: the caller's id is checked first."""
    import connect
    import default
    import disconnect
    import sendmessage

    for handler in (connect.handler, disconnect.handler, default.handler, sendmessage.handler):
        result = handler(event, None)
        assert result["statusCode"] == 400, (handler.__module__, result)
        assert isinstance(result["body"], str), result
        assert result["body"], result


@settings(FUZZ_SETTINGS, max_examples=300)
@given(
    body=st.one_of(
        st.text(max_size=200),
        bad_chat_bodies,
        unmatched_text,
        st.text(max_size=50).map(lambda m: json.dumps({"action": "sendmessage", "message": m})),
    )
)
def test_the_body_parser_passes_only_what_can_be_broadcast(body: str) -> None:
    """What ``parse_sendmessage_body`` accepts is exactly a JSON object's string
    ``message`` that UTF-8 can carry; everything else is a ``BadRequest`` with a reason."""
    import validation

    try:
        chat_message = validation.parse_sendmessage_body(body)
    except validation.BadRequest as error:
        reason = str(error)
        assert reason, "a BadRequest must say what is wrong"
        return
    parsed = json.loads(body)
    assert isinstance(parsed, dict)
    assert chat_message.message == parsed["message"]
    chat_message.message.encode("utf-8")


# -- the stage, the swarm, and a log of what the fuzzer sent ------------------------------


@dataclass
class FuzzLog:
    sent_ns: list[int] = field(default_factory=list)
    expected: list[Expect] = field(default_factory=list)

    def add(self, outcome: Expect, sent_ns: int | None = None) -> None:
        self.sent_ns.append(sent_ns or time.time_ns())
        self.expected.append(outcome)

    def count(self, expect: Expect) -> int:
        return sum(e is expect for e in self.expected)


@dataclass
class RunningSwarm:
    process: Popen[bytes]
    run_dir: Path
    started: float


@pytest.fixture(scope="module")
def fuzz_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    with LocalStage(StageConfig(), log_dir=tmp_path_factory.mktemp("fuzz-stage")) as stage:
        yield stage


@pytest.fixture(scope="module")
def swarm(
    fuzz_stage: LocalStage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSwarm]:
    """A normal swarm on the fuzzed stage, already sending when the fuzzing starts."""
    run_dir = tmp_path_factory.mktemp("fuzz-swarm") / "run"
    started = time.monotonic()
    process = start_swarm(
        run_dir,
        (
            "--target", fuzz_stage.ws_url, "--variant", "optimized",
            "--users", str(SWARM_USERS), "--spawn-rate", "10", "--duration", "10",
            "--send-interval", "0.5", "--warmup", "2", "--drain", "2", "--settle", "1",
            "--no-report", "--quiet",
        ),
    )  # fmt: skip
    progress = run_dir / "progress.json"

    def sending() -> bool:
        try:
            state = json.loads(progress.read_text())
        except (OSError, ValueError):
            return process.poll() is not None  # it ended: stop waiting, the last test says why
        return bool(state["users"] == SWARM_USERS and state["sent"] > 0)

    wait_for(sending, 90, "the swarm to start sending")
    yield RunningSwarm(process, run_dir, started)
    stop_process_tree(process)


@pytest.fixture(scope="module")
def log() -> FuzzLog:
    return FuzzLog()


def _check_text_reply(ws: ClientConnection, expect: set[Expect]) -> Expect:
    """Wait for the reply ``expect`` allows; the outcome seen."""
    if expect == {Expect.CLOSE_1009}:
        closed = expect_close(ws)
        assert closed.rcvd is not None
        assert closed.rcvd.code == CLOSE_MESSAGE_TOO_BIG
        return Expect.CLOSE_1009
    default = Expect.DEFAULT_REPLY in expect and Expect.BAD_REQUEST not in expect
    frame = recv_until(
        ws,
        lambda f: (
            (Expect.DEFAULT_REPLY in expect and f.startswith(DEFAULT_HINT))
            or (Expect.BAD_REQUEST in expect and f.startswith('{"error"'))
        ),
        skip=is_envelope,
    )
    if frame.startswith(DEFAULT_HINT):
        return Expect.DEFAULT_REPLY
    assert not default
    reply: dict[str, Any] = json.loads(frame)
    assert reply["error"] == "BadRequest"
    assert isinstance(reply["message"], str), reply
    assert reply["message"], reply
    return Expect.BAD_REQUEST


@settings(FUZZ_SETTINGS, max_examples=150)
@given(text=st.one_of(bad_chat_bodies, unmatched_text))
def test_text_frames_get_the_default_reply_or_a_bad_request_frame(
    fuzz_stage: LocalStage, swarm: RunningSwarm, log: FuzzLog, text: str
) -> None:
    expect = expected_for_text(text)
    assume(Expect.VALID_CHAT not in expect)
    with open_ws(fuzz_stage.ws_url) as ws:
        sent_ns = time.time_ns()
        ws.send(text)
        log.add(_check_text_reply(ws, expect), sent_ns)


@settings(FUZZ_SETTINGS, max_examples=20)
@given(data=st.binary(max_size=4_096))
def test_binary_frames_close_with_1003(
    fuzz_stage: LocalStage, swarm: RunningSwarm, log: FuzzLog, data: bytes
) -> None:
    with open_ws(fuzz_stage.ws_url) as ws:
        log.add(Expect.CLOSE_1003)
        ws.send(data)
        closed = expect_close(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == CLOSE_UNSUPPORTED_DATA


@settings(FUZZ_SETTINGS, max_examples=15)
@given(
    size=st.integers(MAX_FRAME_BYTES + 1, 3 * MAX_FRAME_BYTES),
    char=st.sampled_from(["a", "é", "€", "😀"]),
    binary=st.booleans(),
)
def test_frames_over_32_kb_close_with_1009(
    fuzz_stage: LocalStage, swarm: RunningSwarm, log: FuzzLog, size: int, char: str, binary: bool
) -> None:
    text = char * -(-size // len(char.encode()))
    assert len(text.encode()) > MAX_FRAME_BYTES
    with open_ws(fuzz_stage.ws_url) as ws:
        log.add(Expect.CLOSE_1009)
        ws.send(text.encode() if binary else text)
        closed = expect_close(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == CLOSE_MESSAGE_TOO_BIG


@settings(FUZZ_SETTINGS, max_examples=20)
@given(
    prefix=st.text(max_size=100).map(str.encode),
    bad=st.sampled_from(INVALID_UTF8),
    suffix=st.binary(max_size=100),
)
def test_text_frames_that_are_not_utf8_close_with_1007(
    fuzz_stage: LocalStage, swarm: RunningSwarm, log: FuzzLog, prefix: bytes, bad: bytes,
    suffix: bytes,
) -> None:  # fmt: skip
    data = prefix + bad + suffix
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        assume(False)
    with open_ws(fuzz_stage.ws_url) as ws:
        log.add(Expect.CLOSE_1007)
        ws.send(data, text=True)  # websockets sends the bytes as they are, in a text frame
        closed = expect_close(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == CLOSE_INVALID_UTF8


def test_swarm_lost_nothing_and_the_gateway_stayed_up(
    fuzz_stage: LocalStage, swarm: RunningSwarm, log: FuzzLog
) -> None:
    """Runs last in this module: it waits for the swarm the fuzzing ran beside."""
    result = finish_swarm("fuzzed", swarm.process, swarm.run_dir, swarm.started).check()
    run = read_run(result.run_dir)
    counts = analyze(run).counts
    times = run.meta["times"]
    during = sum(times["start_ns"] <= t <= times["stop_sending_ns"] for t in log.sent_ns)
    print(
        f"fuzz: {len(log.sent_ns)} bad frames, {during} while the swarm sent; swarm "
        f"{counts.delivered}/{counts.expected} delivered, lost {counts.lost}"
    )
    assert during >= 20, "the fuzzer should run while the swarm sends"
    assert counts.expected > 0
    assert counts.lost == 0
    # The swarm's users saw nothing but chat: no error frame, no echo of a bad frame,
    # no refused connect, no dropped connection.
    assert len(run.errors["kind"]) == 0, sorted(set(run.errors["kind"]))

    gateway = fuzz_stage.stats()["gateway"]
    assert gateway.get("closed_1003", 0) == log.count(Expect.CLOSE_1003) > 0
    assert gateway.get("closed_1007", 0) == log.count(Expect.CLOSE_1007) > 0
    assert gateway.get("closed_1009", 0) == log.count(Expect.CLOSE_1009) > 0
    assert log.count(Expect.DEFAULT_REPLY) > 0
    assert log.count(Expect.BAD_REQUEST) > 0
    assert fuzz_stage.stats()["lambda"]["errors"] == {}, "a handler crashed on some input"

    with open_ws(fuzz_stage.ws_url) as sender, open_ws(fuzz_stage.ws_url) as receiver:
        sender.send(chat("still up"))
        assert recv_until(receiver, lambda frame: frame == "still up") == "still up"
