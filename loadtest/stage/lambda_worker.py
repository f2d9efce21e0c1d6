"""One Lambda execution environment: a process that imports a handler and serves invocations.

Environments are forked from a forkserver that has already imported boto3 and
botocore (``PRELOAD``) and parsed the models the handlers' clients use
(``lambda_preload``), so a cold start costs what Lambda's does after its
runtime is up — importing the handler module and running its module-scope
code — instead of a Python interpreter boot plus boto3's import on a laptop
core. The handler module itself is imported fresh in every environment.

Requests and replies are JSON over a ``multiprocessing`` pipe; the handler's
stdout and stderr go to a log file, where EMF metric lines land as in
CloudWatch Logs.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

PRELOAD = ["boto3", "botocore.client", "botocore.session", "botocore.config", "urllib3"]


class LambdaContext:
    """The parts of Lambda's context object handlers use."""

    def __init__(self, request_id: str, function_name: str, memory_mb: int, deadline_ms: int):
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:{os.environ.get('AWS_REGION', 'us-east-1')}:000000000000:"
            f"function:{function_name}"
        )
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _redirect_output(log_path: str) -> None:
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.WARNING,
        format="[%(levelname)s]\t%(asctime)s\t%(message)s",
        force=True,
    )


def _send(connection: Connection, payload: dict[str, Any]) -> None:
    connection.send_bytes(json.dumps(payload, default=str).encode())


def serve(
    connection: Connection,
    code_dir: str,
    handler_name: str,
    log_path: str,
    environment: dict[str, str],
) -> None:
    """The environment's life: init (import the handler), then one invocation at a time."""
    started = time.perf_counter()
    os.environ.clear()
    os.environ.update(environment)
    _redirect_output(log_path)
    cold_start_ms = float(environment.get("FANBENCH_COLD_START_MS", "0") or 0)
    if cold_start_ms:
        time.sleep(cold_start_ms / 1000)
    # The function's CodeUri is Lambda's task root: the working directory, first on the path.
    os.chdir(code_dir)
    sys.path.insert(0, code_dir)
    module_name, function_name = handler_name.rsplit(".", 1)
    try:
        handler = getattr(importlib.import_module(module_name.replace("/", ".")), function_name)
    except Exception as error:
        traceback.print_exc()
        _send(connection, {"ready": False, "error": f"{type(error).__name__}: {error}"})
        return
    _send(connection, {"ready": True, "init_ms": (time.perf_counter() - started) * 1000})

    lambda_name = environment.get("AWS_LAMBDA_FUNCTION_NAME", module_name)
    memory_mb = int(environment.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    while True:
        try:
            request = json.loads(connection.recv_bytes())
        except (EOFError, OSError):
            return
        request_id = request["request_id"]
        print(f"START RequestId: {request_id} Version: $LATEST")
        began = time.perf_counter()
        context = LambdaContext(request_id, lambda_name, memory_mb, request["deadline_ms"])
        reply: dict[str, Any]
        try:
            if request.get("inject_error"):
                raise RuntimeError("fanbench injected a Lambda error")
            reply = {"ok": True, "result": handler(request["event"], context)}
        except Exception as error:
            traceback.print_exc()
            reply = {"ok": False, "error_type": type(error).__name__, "error": str(error)}
        duration_ms = (time.perf_counter() - began) * 1000
        reply["duration_ms"] = duration_ms
        print(f"END RequestId: {request_id}")
        print(f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms")
        _send(connection, reply)
