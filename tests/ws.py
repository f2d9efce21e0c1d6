"""WebSocket clients for every test that talks to a stage: one home for opening a client,
reading frames, finding a connection's own id, and event-driven waits.

``tests/stage/support.py`` and ``tests/reliability/support.py`` re-export these
under the names they always had. Every wait is bounded in time and every loop in
count; every address the tests use is 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from loadtest.stage.launcher import wait_until

RECV_TIMEOUT_S = 10.0
"""For frames that should come: only a failing test waits this long, so be generous to a loaded
machine."""
OPEN_TIMEOUT_S = 15.0
"""Generous: a stage's $connect is a Lambda invocation, slow on a loaded 2-core machine."""
USER_AGENT = "Python websockets (fanbench tests)"
DEFAULT_HINT = "Use the sendmessage route to send a message"
ID_IN_REPLY = re.compile(r'"connectionID": "([A-Za-z0-9_=-]+)"')
FRAME_LIMIT = 100_000
"""No receive loop reads more frames than this, whatever the deadline."""


def open_ws(
    url: str, user_agent: str = USER_AGENT, max_size: int | None = None
) -> ClientConnection:
    """A websockets sync client on loopback: no proxy, no pings, no compression, bounded open
    and close, frames of any size (the gateway's own limit is what tests check). Use in
    ``with``."""
    return connect(
        url, proxy=None, open_timeout=OPEN_TIMEOUT_S, close_timeout=2, ping_interval=None,
        compression=None, max_size=max_size, user_agent_header=user_agent,
    )  # fmt: skip


@contextlib.contextmanager
def clients(url: str, count: int) -> Iterator[list[ClientConnection]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(open_ws(url)) for _ in range(count)]


def recv_text(ws: ClientConnection, timeout_s: float = RECV_TIMEOUT_S) -> str:
    frame = ws.recv(timeout=timeout_s)
    assert isinstance(frame, str), f"expected a text frame, got {frame!r:.80}"
    return frame


def recv_json(ws: ClientConnection, timeout_s: float = RECV_TIMEOUT_S) -> dict[str, Any]:
    parsed = json.loads(recv_text(ws, timeout_s))
    assert isinstance(parsed, dict), parsed
    return parsed


def any_frame(frame: str) -> bool:
    return True


def no_frame(frame: str) -> bool:
    return False


def recv_until(
    ws: ClientConnection,
    accept: Callable[[str], bool],
    timeout_s: float = RECV_TIMEOUT_S,
    skip: Callable[[str], bool] = no_frame,
) -> str:
    """The first frame ``accept`` takes; frames ``skip`` takes are dropped; any other fails."""
    deadline = time.monotonic() + timeout_s
    for _ in range(FRAME_LIMIT):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            frame = recv_text(ws, remaining)
        except TimeoutError:
            break
        if accept(frame):
            return frame
        if not skip(frame):
            raise AssertionError(f"unexpected frame: {frame[:300]!r}")
    raise AssertionError(f"no expected frame within {timeout_s} s")


def nothing_arrives(ws: ClientConnection, within_s: float) -> bool:
    """True when no frame arrives within ``within_s`` (and the connection stays open)."""
    try:
        frame = ws.recv(timeout=within_s)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected frame: {frame!r:.200}")


def expect_close(ws: ClientConnection, timeout_s: float = RECV_TIMEOUT_S) -> ConnectionClosed:
    """Read (and drop) frames until the server closes; the close exception, or fail."""
    deadline = time.monotonic() + timeout_s
    for _ in range(FRAME_LIMIT):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            ws.recv(timeout=remaining)
        except TimeoutError:
            break
        except ConnectionClosed as closed:
            return closed
    raise AssertionError(f"the server did not close the connection within {timeout_s} s")


def own_id(
    ws: ClientConnection, skip: Callable[[str], bool] = any_frame, timeout_s: float = RECV_TIMEOUT_S
) -> str:
    """The client's connection id, from the ``$default`` route's reply. Other frames are
    dropped while ``skip`` takes them (by default: any), else the call fails."""
    ws.send("who am i")
    frame = recv_until(
        ws, lambda f: DEFAULT_HINT in f and ID_IN_REPLY.search(f) is not None, timeout_s, skip
    )
    match = ID_IN_REPLY.search(frame)
    assert match is not None
    return match.group(1)


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll until ``predicate`` is truthy: a wait for an event, never for a guessed duration."""
    assert wait_until(predicate, timeout_s), f"timed out after {timeout_s} s waiting for {what}"
