"""One Lambda execution environment: a process that imports a handler and serves invocations.

Run as ``python -m loadtest.stage.lambda_worker HANDLERS_DIR module.function LOG_FILE``.
It imports only the standard library and the handler (which brings boto3), as
Lambda's Python runtime does. Requests and replies are length-prefixed JSON on
stdin/stdout; the handler's own stdout and stderr go to LOG_FILE, which is
where EMF metric lines land, as in CloudWatch Logs.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import struct
import sys
import time
import traceback
from typing import IO, Any

HEADER = struct.Struct("!I")


def read_frame(stream: IO[bytes]) -> Any | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    return json.loads(stream.read(size))


def write_frame(stream: IO[bytes], payload: Any) -> None:
    data = json.dumps(payload, default=str).encode()
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


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


def main(argv: list[str]) -> int:
    handlers_dir, handler_name, log_path = argv
    protocol_out = os.fdopen(os.dup(1), "wb")
    protocol_in = os.fdopen(os.dup(0), "rb")
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    logging.basicConfig(
        stream=sys.stdout, level=logging.WARNING, format="[%(levelname)s]\t%(asctime)s\t%(message)s"
    )

    started = time.perf_counter()
    cold_start_ms = float(os.environ.get("FANBENCH_COLD_START_MS", "0") or 0)
    if cold_start_ms:
        time.sleep(cold_start_ms / 1000)
    sys.path.insert(0, handlers_dir)
    module_name, function_name = handler_name.rsplit(".", 1)
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as error:
        traceback.print_exc()
        write_frame(protocol_out, {"ready": False, "error": f"{type(error).__name__}: {error}"})
        return 1
    write_frame(protocol_out, {"ready": True, "init_ms": (time.perf_counter() - started) * 1000})

    lambda_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", module_name)
    memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    while (request := read_frame(protocol_in)) is not None:
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
        write_frame(protocol_out, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
