"""Lambda's Invoke API over HTTP (aiohttp), so a handler's boto3 Lambda client works locally.

The stage's functions (every one the template creates for its parameters, routed or
not) are invoked on the same ``LambdaRuntime`` the gateway uses, so they share
its concurrency. ``RequestResponse`` waits for the result; ``Event`` answers 202
at once and runs the event in the background, retried as AWS retries an
asynchronous event (``invoke_rules.AsyncRetryPolicy``). Rules and error shapes
are in ``invoke_rules``.

Test hooks beside the API: ``GET /_fanbench/invoke-stats`` (counters);
``POST /_fanbench/fail-next`` (``{"function": name, "count": n}``: the next n
invocations of that function fail in the worker before the handler runs, as a
crashed or failing invocation would; with ``"after": true`` the handler runs to
the end, its work done, and the invocation is then reported failed, as one that
crashed or timed out after posting would be: an asynchronous one is retried);
``POST /_fanbench/duplicate-next`` (``{"function": name, "count": n}``: each of
the next n asynchronous events of that function is delivered twice, as AWS
documents an event may be).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from fanbench_common.limits import LAMBDA_SYNC_PAYLOAD_BYTES
from loadtest.stage import invoke_rules as rules
from loadtest.stage.invoke_rules import AsyncRetryPolicy, Attempt, InvocationType
from loadtest.stage.lambda_runtime import InvocationResult, LambdaRuntime
from loadtest.stage.template import FunctionSpec

STATS_PATH = "/_fanbench/invoke-stats"
FAIL_NEXT_PATH = "/_fanbench/fail-next"
DUPLICATE_NEXT_PATH = "/_fanbench/duplicate-next"
FAILED_AFTER = "RuntimeError: fanbench injected a failure after the handler returned"
MAX_RUNS_PER_EVENT = 1_000
"""A bound on one event's runs; the retry policy ends every event long before it."""


def _error(error: rules.LambdaApiError, request_id: str) -> web.Response:
    return web.Response(
        status=error.status,
        body=error.body(),
        headers={**error.headers(), "x-amzn-RequestId": request_id},
    )


def attempt_of(result: InvocationResult) -> Attempt:
    if result.ok:
        return Attempt.SUCCEEDED
    if result.throttled or rules.is_throttle(result.error):
        return Attempt.THROTTLED
    return Attempt.FUNCTION_ERROR


class InvokeApi:
    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        runtime: LambdaRuntime,
        retry_policy: AsyncRetryPolicy,
        region: str,
        unemulated: Mapping[str, str] | None = None,
    ) -> None:
        self.functions = functions
        self.unemulated = dict(unemulated or {})
        self.runtime = runtime
        self.retry_policy = retry_policy
        self.region = region
        self.stats: Counter[str] = Counter()
        self._fail_next: Counter[str] = Counter()
        self._fail_after: Counter[str] = Counter()
        self._duplicate_next: Counter[str] = Counter()
        self._events: set[asyncio.Task[None]] = set()
        self.app = web.Application(client_max_size=2 * LAMBDA_SYNC_PAYLOAD_BYTES)
        self.app.router.add_get(STATS_PATH, self.get_stats)
        self.app.router.add_post(FAIL_NEXT_PATH, self.fail_next)
        self.app.router.add_post(DUPLICATE_NEXT_PATH, self.duplicate_next)
        self.app.router.add_route("*", "/{tail:.*}", self.invoke)

    async def get_stats(self, _request: web.Request) -> web.Response:
        return web.json_response({**self.stats, "async_in_flight": len(self._events)})

    async def _order(self, request: web.Request) -> tuple[str, int, bool] | web.Response:
        try:
            order = await request.json()
            function, count = str(order["function"]), int(order["count"])
            after = order.get("after", False)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            return web.Response(status=400, text=f"want {{function, count}}: {error}")
        if function not in self.functions or count < 0 or not isinstance(after, bool):
            return web.Response(status=400, text=f"no function {function!r} (or count < 0)")
        return function, count, after

    async def fail_next(self, request: web.Request) -> web.Response:
        order = await self._order(request)
        if isinstance(order, web.Response):
            return order
        function, count, after = order
        (self._fail_after if after else self._fail_next)[function] = count
        return web.json_response({"function": function, "count": count, "after": after})

    async def duplicate_next(self, request: web.Request) -> web.Response:
        order = await self._order(request)
        if isinstance(order, web.Response):
            return order
        function, count, _ = order
        self._duplicate_next[function] = count
        return web.json_response({"function": function, "count": count})

    def _take(self, faults: Counter[str], function: str, stat: str) -> bool:
        if faults[function] <= 0:
            return False
        faults[function] -= 1
        self.stats[stat] += 1
        return True

    async def _run(self, spec: FunctionSpec, event: Any, request_id: str) -> InvocationResult:
        """One invocation, with the faults ordered for its function."""
        result = await self.runtime.invoke(
            spec, event, request_id, inject_error=self._take_fault(spec.logical_id)
        )
        if result.ok and self._take(self._fail_after, spec.logical_id, "injected_failures_after"):
            return dataclasses.replace(result, ok=False, result=None, error=FAILED_AFTER)
        return result

    def _take_fault(self, function: str) -> bool:
        if self._fail_next[function] <= 0:
            return False
        self._fail_next[function] -= 1
        self.stats["injected_failures"] += 1
        return True

    async def invoke(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        target = rules.parse_invoke_path(request.raw_path, request.query.get("Qualifier"))
        name = rules.resolve(target, set(self.functions), self.region, self.unemulated)
        if request.method != "POST" and not isinstance(name, rules.LambdaApiError):
            name = rules.NOT_AN_INVOKE
        if isinstance(name, rules.LambdaApiError):
            self.stats[f"invoke_{name.status}"] += 1
            return _error(name, request_id)
        kind = rules.invocation_type(request.headers.get("X-Amz-Invocation-Type"))
        if isinstance(kind, rules.LambdaApiError):
            self.stats[f"invoke_{kind.status}"] += 1
            return _error(kind, request_id)
        payload = rules.parse_payload(await request.read(), kind)
        if isinstance(payload, rules.LambdaApiError):
            self.stats[f"invoke_{payload.status}"] += 1
            return _error(payload, request_id)
        spec = self.functions[name]
        headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": rules.LATEST}
        if kind is InvocationType.DRY_RUN:
            self.stats["dry_runs"] += 1
            return web.Response(status=204, headers=headers)
        if kind is InvocationType.EVENT:
            self.stats["async_accepted"] += 1
            copies = 2 if self._take(self._duplicate_next, name, "async_duplicated") else 1
            for _ in range(copies):
                task = asyncio.create_task(self._run_event(spec, payload, request_id))
                self._events.add(task)
                task.add_done_callback(self._events.discard)
            return web.Response(status=202, headers={"x-amzn-RequestId": request_id})
        self.stats["sync_invocations"] += 1
        result = await self._run(spec, payload, request_id)
        if attempt_of(result) is Attempt.THROTTLED:
            return _error(rules.THROTTLED, request_id)
        if not result.ok:
            self.stats["sync_function_errors"] += 1
            return web.Response(
                status=200,
                body=rules.function_error_body(result.error),
                headers={**headers, "X-Amz-Function-Error": rules.UNHANDLED},
                content_type="application/json",
            )
        return web.Response(
            status=200, body=json.dumps(result.result).encode(), headers=headers,
            content_type="application/json",
        )  # fmt: skip

    async def _run_event(self, spec: FunctionSpec, event: Any, request_id: str) -> None:
        """Run one asynchronous event until it succeeds or the retry policy gives up."""
        accepted = time.monotonic()
        function_errors = throttles = 0
        for _ in range(MAX_RUNS_PER_EVENT):
            self.stats["async_runs"] += 1
            result = await self._run(spec, event, request_id)
            outcome = attempt_of(result)
            function_errors += outcome is Attempt.FUNCTION_ERROR
            throttles += outcome is Attempt.THROTTLED
            self.stats[f"async_{outcome.value}"] += 1
            delay = self.retry_policy.next_delay_s(
                outcome, function_errors, throttles, time.monotonic() - accepted
            )
            if delay is None:
                if outcome is not Attempt.SUCCEEDED:
                    self.stats["async_dropped"] += 1
                return
            self.stats["async_retries"] += 1
            await asyncio.sleep(delay)
        self.stats["async_dropped"] += 1

    async def close(self) -> None:
        """Cancel the events still queued or waiting to be retried (AWS would keep them)."""
        tasks = list(self._events)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
