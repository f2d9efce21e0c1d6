"""The @connections management API over HTTP (aiohttp), plus a stats endpoint for tests.

Rules and error shapes are in ``connections_api``; fault decisions in ``faults``.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from websockets.exceptions import ConnectionClosed

from fanbench_common.limits import CLOSE_NORMAL
from loadtest.stage import connections_api as rules
from loadtest.stage.faults import decide_post
from loadtest.stage.gateway import Gateway, State
from loadtest.stage.throttle import TokenBucket

STATS_PATH = "/_fanbench/stats"


def _iso(epoch_ms: int) -> str:
    stamp = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _error(error: rules.ApiError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), headers=error.headers())


class ManagementApi:
    def __init__(self, gateway: Gateway, throttle_rps: float | None, throttle_burst: float) -> None:
        self.gateway = gateway
        self.faults = gateway.config.faults
        self._rng = random.Random(None if self.faults.seed is None else self.faults.seed + 1)
        self._bucket = (
            TokenBucket(throttle_rps, throttle_burst, time.monotonic()) if throttle_rps else None
        )
        self.app = web.Application(client_max_size=4 * 1024 * 1024)
        self.app.router.add_get(STATS_PATH, self.stats)
        self.app.router.add_route("*", "/{tail:.*}", self.connections)

    async def stats(self, _request: web.Request) -> web.Response:
        gateway = self.gateway
        return web.json_response(
            {
                "gateway": dict(gateway.stats),
                "open_connections": sum(
                    1 for c in gateway.connections.values() if c.state is State.OPEN
                ),
                "lambda": {
                    **gateway.runtime.stats.as_dict(),
                    "concurrency_limit": gateway.runtime.concurrency_limit,
                    "integration_timeouts": gateway.stats["integration_timeouts"],
                },
                "functions": {
                    spec.logical_id: {
                        "handler": spec.handler,
                        "memory_mb": spec.memory_mb,
                        "timeout_s": gateway.runtime.timeout_s(spec),
                    }
                    for spec in gateway.routes.values()
                },
            }
        )

    async def connections(self, request: web.Request) -> web.StreamResponse:
        stats = self.gateway.stats
        body = await request.read()
        target = rules.parse_path(request.raw_path)
        error = rules.check_request(
            target,
            request.method,
            self.gateway.api.stage,
            has_auth="Authorization" in request.headers,
            body_size=len(body),
        )
        if error is None and request.method not in ("POST", "GET", "DELETE"):
            error = rules.MISSING_AUTH
        if error is None and self._bucket is not None and not self._bucket.take(time.monotonic()):
            error = rules.THROTTLED
        if error is not None:
            response = _error(error)
        else:
            assert target is not None
            handler = {"POST": self._post, "GET": self._get, "DELETE": self._delete}
            response = await handler[request.method](target.connection_id, body)
        stats[f"api_{request.method.lower()}_{response.status}"] += 1
        # Which port a call came by: https (as every call on AWS) or the plain-HTTP one.
        stats["api_calls_https" if request.secure else "api_calls_http"] += 1
        # boto3 reads this into ResponseMetadata.RequestId, as from AWS.
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return response

    def _open(self, connection_id: str) -> Any:
        record = self.gateway.connections.get(connection_id)
        return record if record is not None and record.state is State.OPEN else None

    async def _post(self, connection_id: str, data: bytes) -> web.Response:
        if self._open(connection_id) is None:
            return _error(rules.GONE)
        decision = decide_post(self.faults, self._rng)
        if decision.delay_s:
            await asyncio.sleep(decision.delay_s)
        if decision.status == 500:
            return _error(rules.INTERNAL)
        if decision.status == 429:
            return _error(rules.THROTTLED)
        record = self._open(connection_id)
        if record is None:
            return _error(rules.GONE)
        try:
            frame: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            frame = data
        stats = self.gateway.stats
        try:
            for _ in range(decision.copies):
                await record.socket.send(frame)
                stats["frames_out"] += 1
        except ConnectionClosed:
            return _error(rules.GONE)
        if decision.copies == 0:
            stats["frames_dropped"] += 1
        elif decision.copies > 1:
            stats["frames_duplicated"] += decision.copies - 1
        return web.Response(status=200)

    async def _get(self, connection_id: str, _body: bytes) -> web.Response:
        record = self._open(connection_id)
        if record is None:
            return _error(rules.GONE)
        info = record.info
        return web.json_response(
            {
                "connectedAt": _iso(info.connected_at_ms),
                "identity": {"sourceIp": info.source_ip, "userAgent": info.user_agent},
                "lastActiveAt": _iso(record.last_active_ms),
            }
        )

    async def _delete(self, connection_id: str, _body: bytes) -> web.Response:
        record = self._open(connection_id)
        if record is None:
            return _error(rules.GONE)
        record.state = State.CLOSED
        record.closing_reason = (CLOSE_NORMAL, "Connection closed by the @connections API")
        await record.socket.close(CLOSE_NORMAL, "")
        return web.Response(status=204)
