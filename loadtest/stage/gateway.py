"""API Gateway for WebSocket APIs, locally: the client-facing WebSocket side.

The rules (route selection, event shapes, close codes) are pure functions in
``routing``, ``events`` and ``aws_limits``; this module moves frames and calls
Lambda. The @connections side is in ``management``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from fanbench_common.limits import CLOSE_GOING_AWAY, CLOSE_UNSUPPORTED_DATA
from loadtest.stage.config import StageConfig
from loadtest.stage.events import (
    ApiIdentity,
    ConnectionInfo,
    ForwardedFor,
    connect_event,
    disconnect_event,
    disconnect_status,
    message_event,
    new_id,
    trace_id,
)
from loadtest.stage.faults import lose_disconnect
from loadtest.stage.lambda_runtime import InvocationResult, LambdaRuntime
from loadtest.stage.routing import select_route, selection_key
from loadtest.stage.template import FunctionSpec, StageTemplate
from loadtest.stage.throttle import TokenBucket

INTERNAL_SERVER_ERROR = "Internal server error"
ENDPOINT_TIMED_OUT = "Endpoint request timed out"
FORBIDDEN = "Forbidden"
FORWARDED_PROTO = "http"
"""What ``$connect`` hears from a ``ws://`` client; over the TLS port, ``https``, as AWS
(which serves only ``wss://``) always says."""


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class Connection:
    info: ConnectionInfo
    socket: ServerConnection
    state: State = State.CONNECTING
    opened_at: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    last_active_ms: int = 0
    closing_reason: tuple[int, str] | None = None

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_ms = int(time.time() * 1000)


def epoch_ms() -> int:
    return int(time.time() * 1000)


class Gateway:
    def __init__(
        self,
        config: StageConfig,
        template: StageTemplate,
        runtime: LambdaRuntime,
        api: ApiIdentity,
    ) -> None:
        self.config = config
        self.api = api
        self.runtime = runtime
        self.routes: dict[str, FunctionSpec] = {
            key: spec for key, spec in template.routes.items() if key not in config.disabled_routes
        }
        self.message_routes = frozenset(
            k for k in self.routes if k not in ("$connect", "$disconnect")
        )
        self.selection_field = selection_key(template.route_selection_expression)
        self.connections: dict[str, Connection] = {}
        self._by_socket: dict[ServerConnection, Connection] = {}
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(config.faults.seed)
        self._tasks: set[asyncio.Future[Any]] = set()
        # AWS's account quota on new connections; 0 lifts it.
        self._connects = (
            TokenBucket(config.connect_rate, max(1.0, config.connect_burst), time.monotonic())
            if config.connect_rate
            else None
        )

    # -- Lambda integration -------------------------------------------------

    async def _integrate(
        self, spec: FunctionSpec, event: dict[str, Any]
    ) -> InvocationResult | None:
        """Invoke with the integration timeout; ``None`` means the gateway gave up waiting.

        The invocation itself keeps running, as a Lambda does after API Gateway times out.
        """
        request_id = event["requestContext"]["requestId"]
        if self.config.event_log is not None:
            with self.config.event_log.open("a", encoding="utf-8") as log:
                log.write(json.dumps(event) + "\n")
        invocation = asyncio.ensure_future(self.runtime.invoke(spec, event, request_id))
        self._keep(invocation)
        try:
            result = await asyncio.wait_for(
                asyncio.shield(invocation), self.config.integration_timeout_s
            )
        except TimeoutError:
            self.stats["integration_timeouts"] += 1
            return None
        if result.throttled:
            self.stats[f"throttled_{event['requestContext']['eventType'].lower()}"] += 1
        return result

    def _keep(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- handshake: $connect decides --------------------------------------------

    async def process_request(self, socket: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path.rstrip("/") != f"/{self.api.stage}":
            self.stats["handshake_wrong_stage"] += 1
            return socket.respond(403, "Forbidden\n")
        if self._connects is not None and not self._connects.take(time.monotonic()):
            self.stats["connect_throttled"] += 1
            return socket.respond(429, _reason(429) + "\n")
        now = epoch_ms()
        remote = socket.remote_address
        info = ConnectionInfo(
            connection_id=new_id(),
            connected_at_ms=now,
            source_ip=str(remote[0]) if remote else "127.0.0.1",
            user_agent=request.headers.get("User-Agent", ""),
        )
        record = Connection(info=info, socket=socket, last_active_ms=now)
        self.connections[info.connection_id] = record
        self._by_socket[socket] = record
        spec = self.routes.get("$connect")
        if spec is None:
            return None
        query = parse_qs(url.query, keep_blank_values=True)
        local = socket.local_address
        forwarded = ForwardedFor(
            client_ip=info.source_ip,
            port=int(local[1]) if local else 0,
            proto="https" if socket.transport.get_extra_info("ssl_object") else FORWARDED_PROTO,
            trace=trace_id(now // 1000),
        )
        headers = list(request.headers.raw_items())
        event = connect_event(self.api, info, headers, query, forwarded, new_id(), epoch_ms())
        result = await self._integrate(spec, event)
        status = self._connect_status(result)
        if not 200 <= status < 300:
            self.stats["connect_rejected"] += 1
            self._forget(record)
            return socket.respond(status, _reason(status) + "\n")
        return None

    def _connect_status(self, result: InvocationResult | None) -> int:
        """The handshake status ``$connect``'s outcome gives (2xx: the connection opens)."""
        if result is None:
            return 504
        if result.throttled:
            return self.config.throttled_connect_status
        if not result.ok or not isinstance(result.result, dict):
            return 502
        return result.status_code or 200

    def _forget(self, record: Connection) -> None:
        record.state = State.CLOSED
        self.connections.pop(record.info.connection_id, None)
        self._by_socket.pop(record.socket, None)

    # -- an open connection -----------------------------------------------------

    async def serve(self, socket: ServerConnection) -> None:
        record = self._by_socket.get(socket)
        if record is None:  # pragma: no cover - process_request always registers
            return
        record.state = State.OPEN
        self.stats["connected"] += 1
        try:
            async for message in socket:
                if isinstance(message, bytes):
                    self.stats["binary_closed"] += 1
                    await socket.close(CLOSE_UNSUPPORTED_DATA, "Binary data is not supported")
                    break
                record.touch()
                self.stats["messages_in"] += 1
                task = asyncio.create_task(self._route(record, message))
                self._keep(task)
        except ConnectionClosed:
            pass
        finally:
            await socket.wait_closed()
            self._forget(record)
            self._keep(asyncio.create_task(self._disconnect(record)))

    async def _route(self, record: Connection, body: str) -> None:
        route = select_route(body, self.message_routes, self.selection_field)
        request_id = new_id()
        if route is None:
            self.stats["forbidden"] += 1
            await self._error_frame(record, FORBIDDEN, request_id)
            return
        event = message_event(self.api, record.info, route, body, new_id(), request_id, epoch_ms())
        result = await self._integrate(self.routes[route], event)
        if result is None:
            await self._error_frame(record, ENDPOINT_TIMED_OUT, request_id)
        elif result.throttled:
            # API Gateway answers a throttled Lambda as any failed integration.
            await self._error_frame(record, INTERNAL_SERVER_ERROR, request_id)
        elif not result.ok:
            self.stats["integration_errors"] += 1
            await self._error_frame(record, INTERNAL_SERVER_ERROR, request_id)

    async def _error_frame(self, record: Connection, message: str, request_id: str) -> None:
        frame = {
            "message": message,
            "connectionId": record.info.connection_id,
            "requestId": request_id,
        }
        try:
            await record.socket.send(json.dumps(frame))
            self.stats["error_frames"] += 1
        except ConnectionClosed:
            pass

    async def _disconnect(self, record: Connection) -> None:
        protocol = record.socket.protocol
        received = (
            (protocol.close_rcvd.code, protocol.close_rcvd.reason) if protocol.close_rcvd else None
        )
        sent = (
            (protocol.close_sent.code, protocol.close_sent.reason) if protocol.close_sent else None
        )
        code, reason = record.closing_reason or disconnect_status(
            received, sent, protocol.close_rcvd_then_sent
        )
        self.stats[f"closed_{code}"] += 1
        spec = self.routes.get("$disconnect")
        if spec is None:
            return
        if lose_disconnect(self.config.faults, self._rng):
            self.stats["disconnects_lost"] += 1
            return
        event = disconnect_event(self.api, record.info, code, reason, new_id(), epoch_ms())
        self.stats["disconnects_fired"] += 1
        await self._integrate(spec, event)

    # -- timeouts and shutdown ---------------------------------------------------

    async def reap_idle(self) -> None:
        """Close connections past the idle timeout or the maximum duration (1001, as AWS)."""
        interval = max(
            0.05, min(1.0, self.config.idle_timeout_s / 4, self.config.max_connection_s / 4)
        )
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for record in list(self.connections.values()):
                if record.state is not State.OPEN:
                    continue
                if now - record.opened_at >= self.config.max_connection_s:
                    self.stats["max_duration_closed"] += 1
                    await self._close(record, CLOSE_GOING_AWAY, "Going away")
                elif now - record.last_active >= self.config.idle_timeout_s:
                    self.stats["idle_closed"] += 1
                    await self._close(record, CLOSE_GOING_AWAY, "Going away")

    async def _close(self, record: Connection, code: int, reason: str) -> None:
        record.closing_reason = (code, reason)
        self._keep(asyncio.create_task(record.socket.close(code, reason)))

    async def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "Going away") -> None:
        for record in list(self.connections.values()):
            if record.state is State.OPEN:
                await self._close(record, code, reason)

    async def drain(self, timeout_s: float) -> None:
        """Wait for in-flight invocations ($disconnect included), up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))


def _reason(status: int) -> str:
    return {
        401: "Unauthorized",
        403: "Forbidden",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        504: "Gateway Timeout",
    }.get(status, "Rejected")
