"""Node.js execution environments: Lambda's handler contract in real ``node`` workers.

The Lambda runtime drives them directly (no gateway): what a handler returns or
throws, the context it gets, warm reuse, the function timeout and throttling, all
accounted as for Python environments.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from loadtest.stage.faults import Faults
from loadtest.stage.lambda_runtime import InvocationResult, LambdaRuntime
from loadtest.stage.node_runtime import node_path
from loadtest.stage.template import FunctionSpec

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

APP = Path(__file__).resolve().parent / "apps" / "node_contract"
T = TypeVar("T")


def _spec(handler: str, timeout_s: float = 3.0, name: str = "Contract") -> FunctionSpec:
    return FunctionSpec(
        logical_id=name, handler=handler, timeout_s=timeout_s, memory_mb=384,
        runtime="nodejs20.x", code_dir=APP,
    )  # fmt: skip


def _run(
    tmp_path: Path,
    body: Callable[[LambdaRuntime], Awaitable[T]],
    concurrency: int = 4,
    limit: int | None = None,
) -> T:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "NODE_PATH": node_path(),
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
    }

    async def main() -> T:
        runtime = LambdaRuntime(
            tmp_path, environment, concurrency, Faults(), concurrency_limit=limit
        )
        try:
            return await body(runtime)
        finally:
            await runtime.close()

    return asyncio.run(main())


def _body(result: InvocationResult) -> dict[str, Any]:
    assert result.ok, result.error
    parsed: dict[str, Any] = json.loads(result.result["body"])
    return parsed


def test_an_async_handler_gets_the_event_and_lambdas_context(tmp_path: Path) -> None:
    spec = _spec("contract.asyncHandler")

    async def body(runtime: LambdaRuntime) -> list[InvocationResult]:
        return [await runtime.invoke(spec, {"n": n}, f"req-{n}") for n in range(2)]

    first, second = _run(tmp_path, body)
    assert (first.cold, second.cold) == (True, False)
    one, two = _body(first), _body(second)
    assert one["event"] == {"n": 0}
    assert (one["requestId"], one["functionName"], one["memory"]) == ("req-0", "Contract", "384")
    assert 2_000 < one["remaining"] <= 3_000
    assert Path(one["cwd"]) == APP
    assert one["dynamodbEndpoint"] == "http://127.0.0.1:9"
    assert (one["invocations"], two["invocations"]) == (1, 2)  # a warm environment


def test_callback_style_handlers_and_nested_exports(tmp_path: Path) -> None:
    async def body(runtime: LambdaRuntime) -> list[InvocationResult]:
        return [
            await runtime.invoke(_spec("contract.callbackHandler"), {"body": "hi"}, "a"),
            await runtime.invoke(_spec("contract.nested.handler", name="Nested"), {}, "b"),
        ]

    callback, nested = _run(tmp_path, body)
    assert callback.result == {"statusCode": 201, "body": "hi"}
    assert nested.result == {"statusCode": 204}


def test_errors_are_reported_with_their_type_and_the_environment_stays(tmp_path: Path) -> None:
    async def body(runtime: LambdaRuntime) -> tuple[list[InvocationResult], dict[str, Any]]:
        results = [
            await runtime.invoke(_spec("contract.throws"), {}, "a"),
            await runtime.invoke(_spec("contract.callbackError", name="Callback"), {}, "b"),
            await runtime.invoke(_spec("contract.throws"), {}, "c"),
        ]
        return results, runtime.stats.as_dict()

    (thrown, called_back, again), stats = _run(tmp_path, body)
    assert (thrown.ok, thrown.error) == (False, "ChatError: boom")
    assert called_back.error == "TypeError: bad input"
    assert again.cold is False
    assert stats["errors"] == {"Contract": 2, "Callback": 1}


def test_the_function_timeout_kills_the_environment(tmp_path: Path) -> None:
    spec = _spec("contract.slow", timeout_s=0.3)

    async def body(runtime: LambdaRuntime) -> tuple[list[InvocationResult], dict[str, Any]]:
        slow = await runtime.invoke(spec, {"ms": 2_000}, "a")
        quick = await runtime.invoke(spec, {"ms": 1}, "b")
        return [slow, quick], runtime.stats.as_dict()

    (slow, quick), stats = _run(tmp_path, body)
    assert slow.timed_out
    assert slow.error == "Task timed out after 0.30 seconds"
    assert quick.ok
    assert quick.cold  # the timed-out environment was replaced
    assert stats["timeouts"] == {"Contract": 1}
    assert stats["cold_starts"] == {"Contract": 2}


def test_past_the_concurrency_limit_node_invocations_are_throttled(tmp_path: Path) -> None:
    spec = _spec("contract.slow")

    async def body(runtime: LambdaRuntime) -> tuple[list[InvocationResult], dict[str, Any]]:
        results = await asyncio.gather(
            *(runtime.invoke(spec, {"ms": 300}, f"r{n}") for n in range(3))
        )
        return list(results), runtime.stats.as_dict()

    results, stats = _run(tmp_path, body, concurrency=4, limit=2)
    assert sorted(result.throttled for result in results) == [False, False, True]
    assert stats["throttled_by_function"] == {"Contract": 1}
    assert stats["peak_running"] == 2


def test_code_outside_the_checkout_imports_the_sdk_the_runtime_provides(tmp_path: Path) -> None:
    """From a directory with no node_modules above it, as a user's own code may be."""
    code = tmp_path / "code"
    shutil.copytree(APP, code)
    (code / "required.js").write_text(
        'const { DynamoDBClient } = require("@aws-sdk/client-dynamodb");\n'
        "exports.handler = async () => ({ statusCode: 200, body: typeof DynamoDBClient });\n",
        encoding="utf-8",
    )

    async def body(runtime: LambdaRuntime) -> list[InvocationResult]:
        esm = replace(_spec("sdk.handler"), code_dir=code)
        cjs = replace(_spec("required.handler", name="Cjs"), code_dir=code)
        return [await runtime.invoke(esm, {}, "a"), await runtime.invoke(cjs, {}, "b")]

    esm, cjs = _run(tmp_path, body)
    assert esm.ok, esm.error
    assert esm.result["body"] == "function,function"
    assert cjs.ok, cjs.error
    assert cjs.result["body"] == "function"


def test_a_missing_handler_fails_the_cold_start_with_the_reason(tmp_path: Path) -> None:
    async def body(runtime: LambdaRuntime) -> InvocationResult:
        return await runtime.invoke(_spec("contract.absent"), {}, "a")

    result = _run(tmp_path, body)
    assert not result.ok
    assert "contract.absent is undefined or not exported" in result.error
