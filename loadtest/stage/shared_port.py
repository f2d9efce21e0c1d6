"""One port for the WebSocket API and @connections, as AWS serves both on one host.

A connection's first request decides who serves it: a WebSocket upgrade goes to
the gateway's websockets server, anything else (``POST /{stage}/@connections/..``)
to the management API's aiohttp server. The sniffing protocol reads the request
head, then hands the transport over (asyncio's ``set_protocol``) with the bytes
read so far; from then on the chosen server alone speaks on it. The rule is pure
(``is_websocket_upgrade``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

END_OF_HEAD = b"\r\n\r\n"
MAX_HEAD_BYTES = 16 * 1024
"""A request head longer than this is closed unanswered (AWS limits headers to 10 KB)."""


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether an HTTP request head asks for a WebSocket upgrade (``Upgrade: websocket``)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade":
            tokens = (token.strip().lower() for token in value.split(b","))
            if b"websocket" in tokens:
                return True
    return False


ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class SharedPortProtocol(asyncio.Protocol):
    def __init__(self, websocket: ProtocolFactory, http: ProtocolFactory) -> None:
        self._websocket = websocket
        self._http = http
        self._transport: asyncio.Transport | None = None
        self._head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._head += data
        end = self._head.find(END_OF_HEAD)
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._transport.close()
            return
        upgrade = is_websocket_upgrade(self._head[:end])
        protocol = (self._websocket if upgrade else self._http)()
        assert isinstance(protocol, asyncio.Protocol)
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        protocol.data_received(self._head)
        self._head = b""

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
