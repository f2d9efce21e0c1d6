"""A receiver swarm in its own process: N clients that count frames, driven over stdin.

``python -m bench.swarm URL N`` connects N clients (bounded concurrency), prints
one JSON line ``{"connected": n, "seconds": s, ...}``, then answers one JSON
line per command read from stdin:

* ``count`` → ``{"frames": total frames received}``
* ``send TEXT`` → client 0 sends ``TEXT`` as a chat message → ``{"sent": true}``
* ``quit`` or end of input → closes the clients and exits.

Keeping receivers out of the measuring process means that process's CPU time
is its own (``time.process_time`` in post_ceiling), not the receive path's.
``Swarm`` is the parent's side.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from bench.child import JsonLineChild
from bench.fleet import Fleet, sendmessage_body

MAX_COMMANDS = 100_000


def _say(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve(url: str, count: int, connect_timeout_s: float) -> None:
    async with Fleet(url) as fleet:
        report = await fleet.grow(count, connect_timeout_s)
        _say({"connected": len(fleet.clients), "seconds": report.seconds,
              "failed_attempts": report.failed_attempts})  # fmt: skip
        loop = asyncio.get_running_loop()
        for _ in range(MAX_COMMANDS):
            line = await loop.run_in_executor(None, sys.stdin.readline)
            command, _, argument = line.strip().partition(" ")
            if command == "count":
                _say({"frames": fleet.frames})
            elif command == "send" and fleet.clients:
                await fleet.clients[0].send(sendmessage_body(argument))
                _say({"sent": True})
            else:
                break


def main() -> None:
    url, count = sys.argv[1], int(sys.argv[2])
    timeout_s = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0 + count / 20
    asyncio.run(serve(url, count, timeout_s))


class Swarm(JsonLineChild):
    """The parent's handle: ``with Swarm(url, n) as swarm: swarm.frames()``."""

    def __init__(self, url: str, count: int, timeout_s: float | None = None) -> None:
        connect_s = timeout_s if timeout_s is not None else 60.0 + count / 20
        argv = [sys.executable, "-m", "bench.swarm", url, str(count), str(connect_s)]
        super().__init__(argv, ready_timeout_s=connect_s + 10)

    def __enter__(self) -> Swarm:
        super().__enter__()
        return self

    def frames(self) -> int:
        return int(self.command("count")["frames"])

    def send(self, message: str) -> None:
        self.command(f"send {message}")


if __name__ == "__main__":
    main()
