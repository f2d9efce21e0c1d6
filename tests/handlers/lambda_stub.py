"""A stand-in for Lambda's Invoke API in the handler tests: records invocations, answers 202.

A real HTTP server, so the handler's boto3 Lambda client signs, sends and parses
exactly as against AWS; ``refuse_with`` scripts an error (429 with
``x-amzn-ErrorType: TooManyRequestsException``, say) for the next calls;
``answer_late`` accepts the next calls but answers them only after a delay (a
queued event whose answer the caller may never see).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from loadtest.stage.invoke_rules import parse_invoke_path


@dataclass(frozen=True)
class Invocation:
    function: str
    invocation_type: str
    payload: bytes
    accepted: bool = True

    def event(self) -> Any:
        return json.loads(self.payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    stub: LambdaStub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the records are the log."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        assert isinstance(server, _Server)
        target = parse_invoke_path(urlsplit(self.path).path)
        name = target.name if target else unquote(self.path)
        kind = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        refusal = server.stub.record(Invocation(name, kind, body))
        delay_s = server.stub.take_delay()
        if delay_s:
            time.sleep(delay_s)
        if refusal is not None:
            status, error_type = refusal
            data = json.dumps({"Type": "User", "message": "refused by the test"}).encode()
            self.send_response(status)
            self.send_header("x-amzn-ErrorType", error_type)
            self.send_header("Content-Type", "application/json")
        else:
            data = b""
            self.send_response(202 if kind == "Event" else 200)
        try:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # a late answer its caller stopped waiting for


class LambdaStub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._invocations: list[Invocation] = []
        self._refusals = 0
        self._refusal: tuple[int, str] = (429, "TooManyRequestsException")
        self._late = 0
        self._late_s = 0.0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self._invocations.clear()
            self._refusals = 0
            self._late = 0

    def refuse_with(self, count: int, status: int, error_type: str) -> None:
        """Answer the next ``count`` calls with this error instead of accepting them."""
        with self._lock:
            self._refusals, self._refusal = count, (status, error_type)

    def answer_late(self, count: int, delay_s: float) -> None:
        """Accept the next ``count`` calls, but answer each only after ``delay_s``."""
        with self._lock:
            self._late, self._late_s = count, delay_s

    def take_delay(self) -> float:
        with self._lock:
            if self._late <= 0:
                return 0.0
            self._late -= 1
            return self._late_s

    def record(self, invocation: Invocation) -> tuple[int, str] | None:
        with self._lock:
            if self._refusals > 0:
                self._refusals -= 1
                self._invocations.append(replace(invocation, accepted=False))
                return self._refusal
            self._invocations.append(invocation)
            return None

    def invocations(self) -> list[Invocation]:
        """Every call, refused ones included."""
        with self._lock:
            return list(self._invocations)

    def accepted(self) -> list[Invocation]:
        return [i for i in self.invocations() if i.accepted]
