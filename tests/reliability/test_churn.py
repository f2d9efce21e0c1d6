"""Connection churn under continuous broadcasts: no live client is ever dropped.

``$connect`` stores a connection's item before API Gateway opens the connection,
and the gateway answers 410 to a post in between. An optimized handler that took
that 410 for a stale id deleted the brand-new item, and that client never
received another broadcast. Here, on the real local stage, 500 clients connect
one after another (alternating rooms ``a`` and ``b``; at most ``WINDOW`` of them
open at once, the oldest closed as each new one opens) while one client in each
room broadcasts every 30 ms. Checked:

* every client, before it is closed, receives a broadcast of its room sent after
  its handshake completed (its item was never deleted);
* no frame ever crosses rooms;
* at the end every open connection is in the table, nothing else is, and each
  receives the next broadcast of its room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from tests.reliability.support import SEND
from tests.stage.support import DEFAULT_HINT, ID_IN_REPLY, gateway_stat, table_ids, wait_for

CONNECTS = 500
WINDOW = 16
BROADCAST_EVERY_S = 0.03
ROOMS = ("a", "b")
FRAME_WAIT_S = 10.0
"""How long a client may wait for a broadcast sent after it opened (a dropped one waits forever)."""
RUN_LIMIT_S = 240.0


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(variant="optimized")
    with LocalStage(config, log_dir=tmp_path_factory.mktemp("churn")) as running:
        yield running


@dataclass
class Client:
    ws: ClientConnection
    room: str
    opened_at: float
    frames: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.ws:
                self.frames.append(str(frame))
                self.arrived.set()

    async def wait_for_frame(self, matches: Any, timeout_s: float) -> str | None:
        """The first frame (already here or arriving) for which ``matches`` is true."""
        deadline = time.monotonic() + timeout_s
        for _ in range(100_000):
            for frame in self.frames:
                if matches(frame):
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return None

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await self.reader


async def open_client(url: str, room: str) -> Client:
    ws = await connect(
        f"{url}?room={room}",
        proxy=None,
        open_timeout=15,
        close_timeout=2,
        ping_interval=None,
        compression=None,
    )
    client = Client(ws=ws, room=room, opened_at=time.monotonic())
    client.start()
    return client


@dataclass
class Broadcaster:
    """Sends ``room:seq`` every ``BROADCAST_EVERY_S``; remembers when each was sent."""

    client: Client
    sent_at: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        room = self.client.room
        while not stop.is_set():
            self.sent_at.append(time.monotonic())
            message = f"{room}:{len(self.sent_at) - 1}"
            await self.client.ws.send(json.dumps({"action": "sendmessage", "message": message}))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BROADCAST_EVERY_S)

    def sent_after(self, moment: float) -> Any:
        """A frame predicate: a broadcast of this room sent after ``moment``."""
        room = self.client.room

        def matches(frame: str) -> bool:
            prefix, _, seq = frame.partition(":")
            return prefix == room and seq.isdigit() and self.sent_at[int(seq)] > moment

        return matches


async def own_id(client: Client) -> str:
    await client.ws.send("who am i")
    frame = await client.wait_for_frame(
        lambda f: DEFAULT_HINT in f and ID_IN_REPLY.search(f) is not None, 10.0
    )
    assert frame is not None, "no $default reply"
    match = ID_IN_REPLY.search(frame)
    assert match is not None
    return match.group(1)


@dataclass
class Outcome:
    connects: int = 0
    dropped: list[int] = field(default_factory=list)
    """Indexes of clients that never received their room's broadcast while open."""
    crossed: list[str] = field(default_factory=list)
    open_ids: dict[str, str] = field(default_factory=dict)
    """Connection id -> room, of every connection open at the end."""
    in_table: set[str] = field(default_factory=set)
    """The table's ids at the end, while those connections were still open."""
    missed_final: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def crossed_frames(client: Client) -> list[str]:
    other_rooms = tuple(f"{room}:" for room in ROOMS if room != client.room)
    return [frame for frame in client.frames if frame.startswith(other_rooms)]


async def churn(stage: LocalStage) -> Outcome:
    outcome = Outcome()
    began = time.monotonic()
    senders = {room: Broadcaster(await open_client(stage.ws_url, room)) for room in ROOMS}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(b.run(stop)) for b in senders.values()]
    window: list[tuple[int, Client]] = []

    async def retire(index: int, client: Client) -> None:
        received = await client.wait_for_frame(
            senders[client.room].sent_after(client.opened_at), FRAME_WAIT_S
        )
        if received is None:
            outcome.dropped.append(index)
        outcome.crossed += crossed_frames(client)
        await client.close()

    try:
        for index in range(CONNECTS):
            assert time.monotonic() - began < RUN_LIMIT_S, f"only {index} connects in time"
            window.append((index, await open_client(stage.ws_url, ROOMS[index % 2])))
            outcome.connects += 1
            if len(window) > WINDOW:
                await retire(*window.pop(0))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    # Every open client, including the two senders, is in the table and nothing else is.
    finals = [client for _, client in window] + [b.client for b in senders.values()]
    outcome.open_ids = {await own_id(client): client.room for client in finals}
    with contextlib.suppress(AssertionError):  # $disconnects of the last closed may lag
        await asyncio.to_thread(
            wait_for, lambda: table_ids(stage) == set(outcome.open_ids), 15, "the table to settle"
        )
    outcome.in_table = await asyncio.to_thread(table_ids, stage)
    # The next broadcast of each room reaches every open client of that room.
    last = time.monotonic()
    for room, sender in senders.items():
        await sender.client.ws.send(
            json.dumps({"action": "sendmessage", "message": f"{room}:final"})
        )
    for client in finals:
        if client in (b.client for b in senders.values()):
            continue
        text = f"{client.room}:final"
        if await client.wait_for_frame(lambda f, t=text: f == t, FRAME_WAIT_S) is None:
            outcome.missed_final.append(client.room)
    for client in finals:
        outcome.crossed += crossed_frames(client)
        await client.close()
    outcome.wall_s = last - began
    return outcome


def emf_totals(stage: LocalStage, names: tuple[str, ...]) -> dict[str, int]:
    totals = dict.fromkeys(names, 0)
    for path in sorted(stage.endpoints.log_dir.glob(f"{SEND}-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith('{"_aws"'):
                record = json.loads(line)
                for name in names:
                    totals[name] += int(record.get(name, 0))
    return totals


def test_no_live_connection_is_dropped_under_churn(stage: LocalStage) -> None:
    outcome = asyncio.run(churn(stage))
    totals = emf_totals(stage, ("Gone", "GoneInHandshake", "StaleRemoved", "Delivered"))
    in_table = outcome.in_table
    print(
        f"{outcome.connects} connects in {outcome.wall_s:.1f} s; posts answered 410 "
        f"{gateway_stat(stage, 'api_post_410')}, handler counts {totals}"
    )  # fmt: skip

    assert outcome.connects == CONNECTS
    assert totals["Gone"] > 0, "no post met a connecting or closing client: nothing was tested"
    assert outcome.dropped == [], f"{len(outcome.dropped)} clients stopped receiving"
    assert outcome.crossed == [], f"frames crossed rooms: {outcome.crossed[:5]}"
    assert in_table == set(outcome.open_ids), (
        f"open but not in the table: {len(set(outcome.open_ids) - in_table)}; "
        f"in the table but closed: {len(in_table - set(outcome.open_ids))}"
    )
    assert outcome.missed_final == []
    assert totals["StaleRemoved"] == 0, "every connection here is younger than the grace"
