"""Many real WebSocket clients in one asyncio process (the ``websockets`` asyncio client).

Each client has one receive task that stamps every frame on arrival with
``time.perf_counter()``. A broadcast is watched by its message text (a token
unique to that send), so the time from send to the *last* delivery, the count
and duplicates come straight from the stamps.

Connecting goes through the stage's ``$connect`` → Lambda → moto ``put_item``
(a few hundred per second), so clients connect with bounded concurrency and a
bounded open timeout, in rounds that retry only the ones that failed.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

CONNECT_CONCURRENCY = 32
OPEN_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 1.0
CONNECT_ROUNDS = 3
WAIT_POLL_S = 0.005
USER_AGENT = "fanbench-bench"


def sendmessage_body(message: str) -> str:
    return json.dumps({"action": "sendmessage", "message": message})


@dataclass
class ConnectReport:
    requested: int
    connected: int
    failed_attempts: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.connected / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Watch:
    """Arrivals of one broadcast, by receiving client."""

    token: str
    expected: int
    sent_at: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    receivers: set[int] = field(default_factory=set)
    duplicates: int = 0

    def arrive(self, client: int, at: float) -> None:
        if client in self.receivers:
            self.duplicates += 1
            return
        self.receivers.add(client)
        self.arrivals.append(at)

    @property
    def delivered(self) -> int:
        return len(self.receivers)

    @property
    def complete(self) -> bool:
        return self.delivered >= self.expected

    @property
    def to_last_s(self) -> float:
        return max(self.arrivals) - self.sent_at if self.arrivals else float("nan")

    @property
    def to_first_s(self) -> float:
        return min(self.arrivals) - self.sent_at if self.arrivals else float("nan")

    def delivered_within(self, seconds: float) -> int:
        return sum(1 for at in self.arrivals if at - self.sent_at <= seconds)


class Fleet:
    """N clients of one WebSocket URL. Use ``async with Fleet(url) as fleet``."""

    def __init__(
        self,
        url: str,
        connect_concurrency: int = CONNECT_CONCURRENCY,
        open_timeout_s: float = OPEN_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.connect_concurrency = connect_concurrency
        self.open_timeout_s = open_timeout_s
        self.clients: list[ClientConnection] = []
        self.frames = 0
        self.other_frames = 0
        self.last_other = ""
        self._watches: dict[str, Watch] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _receive(self, index: int, client: ClientConnection) -> None:
        try:
            async for frame in client:
                at = time.perf_counter()
                self.frames += 1
                text = frame if isinstance(frame, str) else frame.decode(errors="replace")
                watch = self._watches.get(text)
                if watch is not None:
                    watch.arrive(index, at)
                else:
                    self.other_frames += 1
                    self.last_other = text[:200]
        except ConnectionClosed:
            pass

    def _add(self, client: ClientConnection) -> None:
        index = len(self.clients)
        self.clients.append(client)
        self._tasks.append(asyncio.create_task(self._receive(index, client)))

    async def _connect_one(self, slots: asyncio.Semaphore, deadline: float) -> bool:
        async with slots:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                client = await connect(
                    self.url, open_timeout=min(self.open_timeout_s, remaining),
                    close_timeout=CLOSE_TIMEOUT_S, ping_interval=None, compression=None,
                    max_queue=None, proxy=None, user_agent_header=USER_AGENT,
                )  # fmt: skip
            except (OSError, TimeoutError, WebSocketException):
                return False
            self._add(client)
            return True

    async def grow(self, total: int, timeout_s: float) -> ConnectReport:
        """Connect clients until there are ``total`` (bounded rounds, bounded time)."""
        requested = max(0, total - len(self.clients))
        deadline = time.monotonic() + timeout_s
        slots = asyncio.Semaphore(self.connect_concurrency)
        failed = 0
        before = len(self.clients)
        started = time.perf_counter()
        for _ in range(CONNECT_ROUNDS):
            missing = total - len(self.clients)
            if missing <= 0 or time.monotonic() >= deadline:
                break
            done = await asyncio.gather(
                *(self._connect_one(slots, deadline) for _ in range(missing))
            )
            failed += done.count(False)
        return ConnectReport(
            requested, len(self.clients) - before, failed, time.perf_counter() - started
        )

    async def broadcast(self, token: str, timeout_s: float, sender: int = 0) -> Watch:
        """Send ``token`` as a chat message from client ``sender``; wait for every other client."""
        watch = Watch(token, expected=len(self.clients) - 1)
        self._watches[token] = watch
        deadline = time.monotonic() + timeout_s
        watch.sent_at = time.perf_counter()
        await self.clients[sender].send(sendmessage_body(token))
        for _ in range(int(timeout_s / WAIT_POLL_S) + 2):
            if watch.complete or time.monotonic() >= deadline:
                break
            await asyncio.sleep(WAIT_POLL_S)
        return watch

    async def vanish(self, count: int) -> None:
        """Close the last ``count`` clients and forget them: later broadcasts expect fewer."""
        leaving = self.clients[-count:] if count > 0 else []
        tasks = self._tasks[-count:] if count > 0 else []
        await asyncio.gather(*(client.close() for client in leaving), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)
        del self.clients[len(self.clients) - len(leaving) :]
        del self._tasks[len(self._tasks) - len(tasks) :]

    async def settle(self, watch: Watch, seconds: float) -> None:
        """Keep receiving a little longer, so late duplicates are counted."""
        await asyncio.sleep(seconds)
        self._watches.pop(watch.token, None)

    async def close(self) -> None:
        """Close every client (bounded), then stop the receive tasks."""
        if self.clients:
            closing = asyncio.gather(
                *(client.close() for client in self.clients), return_exceptions=True
            )
            try:
                await asyncio.wait_for(closing, CLOSE_TIMEOUT_S * 3)
            except TimeoutError:
                for client in self.clients:
                    client.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.clients.clear()
        self._tasks.clear()
