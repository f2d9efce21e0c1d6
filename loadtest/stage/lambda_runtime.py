"""Lambda, locally: worker processes as execution environments.

Each environment imports its handler once and keeps module globals between
warm invocations; it runs one invocation at a time; an invocation that outlives
the function timeout kills the environment, and the next one starts cold.

Two limits apply. Lambda's concurrency limit (the account's quota, or reserved
concurrency) throttles: an invocation that finds that many already in flight
fails at once with ``TooManyRequestsException``, as Lambda answers a synchronous
invoke. Below it, a semaphore of local slots (the laptop's cores, not an AWS
quota) makes the rest wait; the wait is reported as queue depth and queue wait.
With no concurrency limit (``None``) nothing is throttled and invocations queue
without bound, the stage's behaviour before throttling was modelled.

Between invocations an environment is frozen as Lambda freezes it: the worker
process is stopped (SIGSTOP) once it has answered (or finished its init) and
resumed (SIGCONT) when its next invocation is sent, Python and Node.js alike.
Work a handler starts and does not await before returning (posts, timers,
threads) stalls until then, as on AWS, where emulators that keep the process
running hide it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import signal
import socket
import struct
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from fanbench_common.errors import FanbenchError
from loadtest.stage import lambda_worker
from loadtest.stage.faults import Faults, fail_invocation
from loadtest.stage.node_runtime import NodeProcess, is_node, start_node_worker
from loadtest.stage.template import FunctionSpec
from loadtest.stage.throttle import lambda_admits, nearest_rank

SHUTDOWN_GRACE_S = 3.0
TIMEOUT_GRACE_S = 0.05
THROTTLED_ERROR = "TooManyRequestsException: Rate Exceeded."
RECENT_WAITS = 10_000
"""Queue waits kept for ``queue_wait_ms_p99`` (the p99 of the latest ones)."""
HEADER = struct.Struct("!I")
"""multiprocessing's pipe framing: a 4-byte big-endian length, then the bytes."""


def forkserver_context() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        [*lambda_worker.PRELOAD, "loadtest.stage.lambda_preload", "loadtest.stage.lambda_worker"]
    )
    return context


@dataclass(frozen=True)
class InvocationResult:
    ok: bool
    result: Any = None
    error: str = ""
    timed_out: bool = False
    throttled: bool = False
    """Lambda refused the invocation (429): the concurrency limit was reached."""
    cold: bool = False
    duration_ms: float = 0.0

    @property
    def status_code(self) -> int | None:
        """The proxy result's ``statusCode``, when the handler returned one."""
        if self.ok and isinstance(self.result, dict):
            code = self.result.get("statusCode")
            return code if isinstance(code, int) else None
        return None


class EnvironmentFailed(FanbenchError, RuntimeError):
    """An execution environment could not start (the handler failed to import)."""


class _Environment:
    def __init__(
        self,
        spec: FunctionSpec,
        process: BaseProcess | NodeProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.spec = spec
        self.process = process
        self.reader = reader
        self.writer = writer
        self.invocations = 0

    def _signal(self, signum: signal.Signals) -> None:
        pid = self.process.pid
        if pid is not None and self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def freeze(self) -> None:
        """Stop the process between invocations, as Lambda freezes an environment."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    async def send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.writer.write(HEADER.pack(len(data)) + data)
        await self.writer.drain()

    async def receive(self) -> dict[str, Any]:
        (size,) = HEADER.unpack(await self.reader.readexactly(HEADER.size))
        reply: dict[str, Any] = json.loads(await self.reader.readexactly(size))
        return reply

    def close_channel(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()

    def kill(self) -> None:
        self.close_channel()
        if self.process.is_alive():
            self.process.kill()  # SIGKILL ends a stopped process too


@dataclass
class RuntimeStats:
    invocations: Counter[str] = field(default_factory=Counter)
    cold_starts: Counter[str] = field(default_factory=Counter)
    provisioned: Counter[str] = field(default_factory=Counter)
    init_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    timeouts: Counter[str] = field(default_factory=Counter)
    injected_errors: int = 0
    running: int = 0
    peak_running: int = 0
    throttled: Counter[str] = field(default_factory=Counter)
    queued_now: int = 0
    peak_queued: int = 0
    queue_wait_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_WAITS))
    """How long the latest admitted invocations waited for a local slot (bounded: the
    stats endpoint sorts it on every call, on the event loop)."""
    queue_wait_ms_max: float = 0.0
    queue_waits: int = 0

    def record_wait(self, wait_ms: float) -> None:
        self.queue_wait_ms.append(wait_ms)
        self.queue_wait_ms_max = max(self.queue_wait_ms_max, wait_ms)
        self.queue_waits += 1

    duration_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def as_dict(self) -> dict[str, Any]:
        return {
            "throttled": sum(self.throttled.values()),
            "throttled_by_function": dict(self.throttled),
            "queued_now": self.queued_now,
            "peak_queued": self.peak_queued,
            "queue_wait_ms_max": self.queue_wait_ms_max,
            "queue_wait_ms_p99": nearest_rank(list(self.queue_wait_ms), 0.99),
            "queue_waits": self.queue_waits,
            "invocations": dict(self.invocations),
            "cold_starts": dict(self.cold_starts),
            "provisioned": dict(self.provisioned),
            "init_ms": self.init_ms,
            "errors": dict(self.errors),
            "timeouts": dict(self.timeouts),
            "injected_errors": self.injected_errors,
            "running": self.running,
            "peak_running": self.peak_running,
            "duration_ms": {name: list(values) for name, values in self.duration_ms.items()},
        }


class LambdaRuntime:
    def __init__(
        self,
        log_dir: Path,
        base_environment: dict[str, str],
        concurrency: int,
        faults: Faults,
        timeout_override_s: float | None = None,
        environment_overrides: dict[str, str] | None = None,
        concurrency_limit: int | None = None,
        freeze: bool = True,
    ) -> None:
        self.log_dir = log_dir
        self.freeze = freeze
        """Stop environments between invocations, as Lambda does."""
        self.base_environment = base_environment
        self.environment_overrides = dict(environment_overrides or {})
        """Applied after the template's variables, as an edited function configuration would be."""
        self.faults = faults
        self.timeout_override_s = timeout_override_s
        self.concurrency_limit = concurrency_limit
        """Lambda's concurrency limit: in flight past it is throttled; ``None``: queue."""
        self.stats = RuntimeStats()
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight = 0
        self._idle: dict[str, list[_Environment]] = defaultdict(list)
        self._live: set[_Environment] = set()
        self._serial = itertools.count(1)
        self._rng = random.Random(faults.seed)
        self._context = forkserver_context()

    def timeout_s(self, spec: FunctionSpec) -> float:
        return self.timeout_override_s if self.timeout_override_s is not None else spec.timeout_s

    async def provision(self, specs: list[FunctionSpec], per_function: int) -> None:
        """Start environments ahead of traffic, as provisioned concurrency does."""
        started = await asyncio.gather(
            *(self._start(spec, provisioned=True) for spec in specs for _ in range(per_function))
        )
        for env in started:
            self._idle[env.spec.logical_id].append(env)

    async def _start(self, spec: FunctionSpec, provisioned: bool = False) -> _Environment:
        environment = {
            **self.base_environment,
            **spec.environment,
            **self.environment_overrides,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(self.timeout_s(spec))),
            "FANBENCH_COLD_START_MS": str(self.faults.cold_start_ms),
        }
        log_file = self.log_dir / f"{spec.logical_id}-{next(self._serial)}.log"
        loop = asyncio.get_running_loop()
        process: BaseProcess | NodeProcess
        if is_node(spec.runtime):
            process, channel = await loop.run_in_executor(
                None, start_node_worker, spec.code_dir, spec.handler, log_file, environment
            )
        else:
            ours, theirs = self._context.Pipe()
            process = self._context.Process(
                target=lambda_worker.serve,
                args=(theirs, str(spec.code_dir), spec.handler, str(log_file), environment),
                name=f"lambda-{spec.logical_id}",
                daemon=True,
            )
            # Starting talks to the forkserver over a blocking socket: off the event loop.
            await loop.run_in_executor(None, process.start)
            theirs.close()
            channel = socket.socket(fileno=os.dup(ours.fileno()))
            ours.close()
        reader, writer = await asyncio.open_unix_connection(sock=channel)
        env = _Environment(spec, process, reader, writer)
        try:
            ready = await env.receive()
        except (asyncio.IncompleteReadError, ConnectionError):
            ready = {"ready": False, "error": f"exited with {process.exitcode}"}
        if not ready.get("ready"):
            env.kill()
            raise EnvironmentFailed(f"{spec.logical_id}: {ready.get('error')} (see {log_file})")
        if self.freeze:  # Lambda freezes an environment after its init, too
            env.freeze()
        if provisioned:
            self.stats.provisioned[spec.logical_id] += 1
        else:
            self.stats.cold_starts[spec.logical_id] += 1
            self.stats.init_ms.append(float(ready["init_ms"]))
        self._live.add(env)
        return env

    def _discard(self, env: _Environment) -> None:
        env.kill()
        self._live.discard(env)

    async def invoke(
        self, spec: FunctionSpec, event: Any, request_id: str, inject_error: bool = False
    ) -> InvocationResult:
        """Run one invocation; ``inject_error`` fails it in the worker before the handler runs."""
        name = spec.logical_id
        stats = self.stats
        if not lambda_admits(self._in_flight, self.concurrency_limit):
            stats.throttled[name] += 1
            return InvocationResult(ok=False, error=THROTTLED_ERROR, throttled=True)
        self._in_flight += 1
        waiting = self._slots.locked()  # every local slot is busy: this one queues
        if waiting:
            stats.queued_now += 1
            stats.peak_queued = max(stats.peak_queued, stats.queued_now)
        queued_at = time.monotonic()
        try:
            async with self._slots:
                if waiting:
                    waiting = False
                    stats.queued_now -= 1
                stats.record_wait((time.monotonic() - queued_at) * 1000)
                stats.running += 1
                stats.peak_running = max(stats.peak_running, stats.running)
                try:
                    return await self._invoke_in_slot(spec, event, request_id, inject_error)
                finally:
                    stats.running -= 1
                    stats.invocations[name] += 1
        finally:
            if waiting:  # cancelled before a slot came free
                stats.queued_now -= 1
            self._in_flight -= 1

    async def _invoke_in_slot(
        self, spec: FunctionSpec, event: Any, request_id: str, inject_error: bool = False
    ) -> InvocationResult:
        name = spec.logical_id
        idle = self._idle[name]
        cold = not idle
        try:
            env = idle.pop() if idle else await self._start(spec)
        except EnvironmentFailed as error:
            self.stats.errors[name] += 1
            return InvocationResult(ok=False, error=str(error), cold=True)
        timeout_s = self.timeout_s(spec)
        inject = inject_error or fail_invocation(self.faults, self._rng)
        self.stats.injected_errors += inject
        request = {
            "request_id": request_id,
            "deadline_ms": int(time.time() * 1000 + timeout_s * 1000),
            "event": event,
            "inject_error": inject,
        }
        try:
            env.thaw()
            await env.send(request)
            reply = await asyncio.wait_for(env.receive(), timeout_s + TIMEOUT_GRACE_S)
        except TimeoutError:
            self.stats.timeouts[name] += 1
            self._discard(env)  # Lambda replaces an environment that timed out.
            return InvocationResult(
                ok=False,
                error=f"Task timed out after {timeout_s:.2f} seconds",
                timed_out=True,
                cold=cold,
            )
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            self.stats.errors[name] += 1
            self._discard(env)
            return InvocationResult(ok=False, error=f"environment died: {error!r}", cold=cold)
        env.invocations += 1
        if self.freeze:
            env.freeze()
        idle.append(env)
        duration_ms = float(reply.get("duration_ms", 0.0))
        self.stats.duration_ms[name].append(duration_ms)
        if not reply["ok"]:
            self.stats.errors[name] += 1
            return InvocationResult(
                ok=False, error=f"{reply['error_type']}: {reply['error']}", cold=cold,
                duration_ms=duration_ms,
            )  # fmt: skip
        return InvocationResult(ok=True, result=reply["result"], cold=cold, duration_ms=duration_ms)

    async def close(self) -> None:
        """Stop every environment: close its pipe (the worker exits), then kill stragglers."""
        environments = list(self._live)
        self._live.clear()
        self._idle.clear()
        for env in environments:
            env.thaw()  # a stopped worker would not see its pipe close
            env.close_channel()
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while any(env.process.is_alive() for env in environments) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for env in environments:
            env.kill()
            env.process.join(timeout=1)
