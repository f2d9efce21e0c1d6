"""Lambda, locally: worker processes as execution environments.

Each environment imports its handler once and keeps module globals between
warm invocations; it runs one invocation at a time; an invocation that outlives
the function timeout kills the environment, and the next one starts cold; a
semaphore caps concurrent invocations (the account concurrency limit). Where
AWS would throttle past the cap, this runtime queues: its cap stands for the
laptop's cores, not an account quota.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.stage.faults import Faults, fail_invocation
from loadtest.stage.lambda_worker import HEADER
from loadtest.stage.template import FunctionSpec

SHUTDOWN_GRACE_S = 3.0
TIMEOUT_GRACE_S = 0.05


@dataclass(frozen=True)
class InvocationResult:
    ok: bool
    result: Any = None
    error: str = ""
    timed_out: bool = False
    cold: bool = False
    duration_ms: float = 0.0

    @property
    def status_code(self) -> int | None:
        """The proxy result's ``statusCode``, when the handler returned one."""
        if self.ok and isinstance(self.result, dict):
            code = self.result.get("statusCode")
            return code if isinstance(code, int) else None
        return None


class EnvironmentFailed(RuntimeError):
    """An execution environment could not start (the handler failed to import)."""


class _Environment:
    def __init__(self, spec: FunctionSpec, process: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.process = process
        self.invocations = 0

    async def send(self, payload: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        data = json.dumps(payload).encode()
        self.process.stdin.write(HEADER.pack(len(data)) + data)
        await self.process.stdin.drain()

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        (size,) = HEADER.unpack(await self.process.stdout.readexactly(HEADER.size))
        reply: dict[str, Any] = json.loads(await self.process.stdout.readexactly(size))
        return reply

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


@dataclass
class RuntimeStats:
    invocations: Counter[str] = field(default_factory=Counter)
    cold_starts: Counter[str] = field(default_factory=Counter)
    init_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    timeouts: Counter[str] = field(default_factory=Counter)
    injected_errors: int = 0
    running: int = 0
    peak_running: int = 0
    duration_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def as_dict(self) -> dict[str, Any]:
        return {
            "invocations": dict(self.invocations),
            "cold_starts": dict(self.cold_starts),
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
        handlers_dir: Path,
        log_dir: Path,
        base_environment: dict[str, str],
        concurrency: int,
        faults: Faults,
        timeout_override_s: float | None = None,
    ) -> None:
        self.handlers_dir = handlers_dir
        self.log_dir = log_dir
        self.base_environment = base_environment
        self.faults = faults
        self.timeout_override_s = timeout_override_s
        self.stats = RuntimeStats()
        self._slots = asyncio.Semaphore(concurrency)
        self._idle: dict[str, list[_Environment]] = defaultdict(list)
        self._live: set[_Environment] = set()
        self._serial = itertools.count(1)
        self._rng = random.Random(faults.seed)

    def timeout_s(self, spec: FunctionSpec) -> float:
        return self.timeout_override_s if self.timeout_override_s is not None else spec.timeout_s

    async def _start(self, spec: FunctionSpec) -> _Environment:
        environment = {
            **self.base_environment,
            **spec.environment,
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(self.timeout_s(spec))),
            "FANBENCH_COLD_START_MS": str(self.faults.cold_start_ms),
        }
        log_file = self.log_dir / f"{spec.logical_id}-{next(self._serial)}.log"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtest.stage.lambda_worker",
            str(self.handlers_dir), spec.handler, str(log_file),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=environment,
        )  # fmt: skip
        env = _Environment(spec, process)
        try:
            ready = await env.receive()
        except asyncio.IncompleteReadError:
            ready = {"ready": False, "error": f"exited with {await process.wait()}"}
        if not ready.get("ready"):
            env.kill()
            raise EnvironmentFailed(f"{spec.logical_id}: {ready.get('error')} (see {log_file})")
        self.stats.cold_starts[spec.logical_id] += 1
        self.stats.init_ms.append(float(ready["init_ms"]))
        self._live.add(env)
        return env

    def _discard(self, env: _Environment) -> None:
        env.kill()
        self._live.discard(env)

    async def invoke(self, spec: FunctionSpec, event: dict[str, Any], request_id: str) -> InvocationResult:
        name = spec.logical_id
        async with self._slots:
            self.stats.running += 1
            self.stats.peak_running = max(self.stats.peak_running, self.stats.running)
            try:
                return await self._invoke_in_slot(spec, event, request_id)
            finally:
                self.stats.running -= 1
                self.stats.invocations[name] += 1

    async def _invoke_in_slot(
        self, spec: FunctionSpec, event: dict[str, Any], request_id: str
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
        inject = fail_invocation(self.faults, self._rng)
        self.stats.injected_errors += inject
        request = {
            "request_id": request_id,
            "deadline_ms": int(time.time() * 1000 + timeout_s * 1000),
            "event": event,
            "inject_error": inject,
        }
        try:
            await env.send(request)
            reply = await asyncio.wait_for(env.receive(), timeout_s + TIMEOUT_GRACE_S)
        except TimeoutError:
            self.stats.timeouts[name] += 1
            self._discard(env)  # Lambda replaces an environment that timed out.
            return InvocationResult(
                ok=False, error=f"Task timed out after {timeout_s:.2f} seconds", timed_out=True, cold=cold
            )
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            self.stats.errors[name] += 1
            self._discard(env)
            return InvocationResult(ok=False, error=f"environment died: {error!r}", cold=cold)
        env.invocations += 1
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
        """Stop every environment: close stdin (the worker exits), then kill stragglers."""
        environments = list(self._live)
        self._live.clear()
        self._idle.clear()
        for env in environments:
            if env.process.stdin is not None and not env.process.stdin.is_closing():
                env.process.stdin.close()
        if environments:
            _done, pending = await asyncio.wait(
                [asyncio.create_task(env.process.wait()) for env in environments],
                timeout=SHUTDOWN_GRACE_S,
            )
            for env in environments:
                env.kill()
            for task in pending:
                task.cancel()
