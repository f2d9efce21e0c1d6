"""A broadcast server that is never the bottleneck, for generator_capacity.

``python -m bench.gen_server [MESSAGE_BYTES]`` serves WebSocket on 127.0.0.1
(a free port, printed as ``{"port": p}``) until its stdin closes. Clients of
``/data`` only receive; a client of ``/control`` sends JSON commands and gets
one JSON reply each:

* ``{"cmd": "count"}`` → ``{"connections": n}``
* ``{"cmd": "pace", "rate": R, "seconds": S}``: R frames/s in all, spread over
  every data connection, for S seconds → ``{"sent", "behind", "seconds"}``;
  ``behind`` counts frames skipped because a connection's write buffer was full
  (the client was not keeping up).
* ``{"cmd": "burst", "frames": M}``: M frames to every connection as fast as the
  sockets take them → ``{"sent", "seconds"}``.

Frames carry fanbench's envelope (``fb1:0:<seq>:<t>:<t>:`` padded), so
fanbench's user decodes and records them as real deliveries. To stay cheap, the
server builds server-to-client frames itself (unmasked text frames, RFC 6455
§5.2) and writes many per ``transport.write``; websockets does the handshake.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.stagetools import raise_open_files
from loadtest.envelope import Envelope, encode

HOST = "127.0.0.1"
TICK_S = 0.002
HIGH_WATER_BYTES = 256 * 1024
BURST_CHUNK = 256
IDLE_S = 0.0005
MAX_SECONDS = 120.0
MAX_COMMANDS = 10_000
MAX_CONNECTIONS = 20_000
"""Open files wanted (never above the hard limit): the connection-holding run's 10,000 and more."""
LISTEN_BACKLOG = 4096
"""Connects queued before accept (capped by net.core.somaxconn): a spawn of thousands of
users must not overflow it into SYN retries."""


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (server to client)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


class Broadcaster:
    def __init__(self, message_bytes: int) -> None:
        self.message_bytes = message_bytes
        self.connections: list[ServerConnection] = []
        self.seq = 0

    def frames(self, count: int) -> bytes:
        now = time.time_ns()
        first, self.seq = self.seq, self.seq + count
        return b"".join(
            text_frame(encode(Envelope(0, seq, now, now), self.message_bytes).encode())
            for seq in range(first, first + count)
        )

    async def serve(self, connection: ServerConnection) -> None:
        if connection.request is not None and connection.request.path == "/control":
            await self.control(connection)
            return
        self.connections.append(connection)
        try:
            await connection.wait_closed()
        finally:
            self.connections.remove(connection)

    async def pace(self, rate: float, seconds: float) -> dict[str, Any]:
        targets = list(self.connections)
        seconds = min(seconds, MAX_SECONDS)
        sent = behind = turn = 0
        started = time.perf_counter()
        for _ in range(int(seconds / TICK_S * 4) + 10):
            elapsed = time.perf_counter() - started
            if elapsed >= seconds or not targets:
                break
            due = int(rate * elapsed) - sent - behind
            if due > 0:
                share, extra = divmod(due, len(targets))
                for offset in range(len(targets)):
                    connection = targets[(turn + offset) % len(targets)]
                    count = share + (1 if offset < extra else 0)
                    if count == 0:
                        continue
                    if connection.transport.get_write_buffer_size() > HIGH_WATER_BYTES:
                        behind += count
                        continue
                    connection.transport.write(self.frames(count))
                    sent += count
                turn += extra
            await asyncio.sleep(TICK_S)
        return {"sent": sent, "behind": behind, "seconds": time.perf_counter() - started}

    async def burst(self, frames: int) -> dict[str, Any]:
        left = {id(c): frames for c in self.connections}
        targets = list(self.connections)
        sent = 0
        started = time.perf_counter()
        chunks = len(targets) * (frames // BURST_CHUNK + 1)
        for _ in range(chunks + int(MAX_SECONDS / IDLE_S)):
            if not any(left.values()) or time.perf_counter() - started > MAX_SECONDS:
                break
            progress = 0
            for connection in targets:
                count = min(BURST_CHUNK, left[id(connection)])
                if count and connection.transport.get_write_buffer_size() <= HIGH_WATER_BYTES:
                    connection.transport.write(self.frames(count))
                    left[id(connection)] -= count
                    progress += count
            sent += progress
            await asyncio.sleep(0 if progress else IDLE_S)
        return {"sent": sent, "seconds": time.perf_counter() - started}

    async def control(self, connection: ServerConnection) -> None:
        for _ in range(MAX_COMMANDS):
            try:
                line = await connection.recv()
            except ConnectionClosed:
                return
            await connection.send(json.dumps(await self.command(str(line))))

    async def command(self, line: str) -> dict[str, Any]:
        request = json.loads(line)
        name = request.get("cmd")
        if name == "count":
            return {"connections": len(self.connections)}
        if name == "pace":
            return await self.pace(float(request["rate"]), float(request["seconds"]))
        if name == "burst":
            return await self.burst(int(request["frames"]))
        return {"error": f"unknown command {name!r}"}


async def main(message_bytes: int) -> None:
    broadcaster = Broadcaster(message_bytes)
    raise_open_files(MAX_CONNECTIONS)
    async with serve(
        broadcaster.serve, HOST, 0, compression=None, ping_interval=None, close_timeout=1,
        max_size=2**16, backlog=LISTEN_BACKLOG,
    ) as server:  # fmt: skip
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        loop = asyncio.get_running_loop()
        for _ in range(MAX_COMMANDS):  # until stdin closes: the parent's way to stop us
            if not await loop.run_in_executor(None, sys.stdin.readline):
                break
        for connection in list(broadcaster.connections):
            connection.transport.abort()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 64))
