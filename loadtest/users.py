"""The Locust user: one WebSocket chat client that sends on a schedule and stamps every receipt.

Client library: ``websockets``' sync client. Under Locust's gevent patching its
I/O thread becomes a greenlet; it receives at about 2x websocket-client's rate
(74-85k vs 39-44k frames/s in a raw burst; bench/generator_capacity.py measures
the same comparison), which is the generator's ceiling, so it is the one used.

Fan-out receipts reach Locust's statistics a batch at a time
(``loadtest.receipt_stats``: same counts and percentiles, a fraction of the CPU);
connects, sends and error frames fire Locust's request event one by one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import gevent
from locust import User, constant, task
from locust.exception import StopUser
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from fanbench_common.redaction import redact_text
from fanbench_common.rundir import ErrorKind
from fanbench_common.scenario import connect_url
from loadtest import envelope, handoff, process_context
from loadtest.receipt_stats import receipt_stats

REQUEST_TYPE = "WS"
FANOUT = "fanout"
OPEN_TIMEOUT_S = 10.0


class ChatUser(User):
    """Connects in ``on_start``, sends open-loop in its task, receives in its own greenlet."""

    host = "ws://127.0.0.1:8080/local"
    abstract = False
    wait_time = constant(3600)
    """The task returns only when sending has stopped; then the user waits, interruptibly, for
    Locust to stop it (a user still inside its task would hold Locust's stop for
    ``--stop-timeout``)."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.shared = process_context.current()
        self.client_id, _ = self.shared.next_user()
        self.audience = self.shared.new_audience()
        self.socket: ClientConnection | None = None
        self._receiver: gevent.Greenlet | None = None
        self._seq = 0
        self._stopping = False

    def _fire(self, name: str, response_time_ms: float, exception: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, response_time=response_time_ms,
            response_length=0, exception=exception, context={},
        )  # fmt: skip

    def _receipt_sink(self) -> Callable[[int, float], None]:
        """Where each fan-out receipt's (receipt time ns, response time ms) goes: Locust's
        statistics a batch at a time (``loadtest.receipt_stats``), not a request event each.

        With Locust's OpenTelemetry export on (``--otel``), whose metrics listen to the
        request event, every receipt fires the event as before, so the export sees them."""
        options = self.environment.parsed_options
        if options is not None and getattr(options, "otel", False):
            return self._fire_receipt
        return receipt_stats(self.environment, REQUEST_TYPE, FANOUT).add

    def _fire_receipt(self, _received_ns: int, response_time_ms: float) -> None:
        self._fire(FANOUT, response_time_ms)

    def on_start(self) -> None:
        # A worker's users connect only once the master's scenario, target and token are
        # applied (loadtest/handoff.py): before, they would send with the defaults.
        if not self.shared.scenario_ready.wait(handoff.SCENARIO_WAIT_S):
            recorder = self.shared.recorder
            recorder.error(
                self.client_id, recorder.now_ns(), ErrorKind.NO_SCENARIO, handoff.NO_SCENARIO
            )
            self._fire("connect", 0.0, RuntimeError(handoff.NO_SCENARIO))
            return
        self._connect()

    def _connect(self) -> bool:
        """Open the connection and start its receiver; a refusal is recorded, not raised."""
        scenario = self.shared.scenario
        recorder = self.shared.recorder
        room = None if self.audience == "*" else self.audience
        url = connect_url(self.host or "", room, scenario.token)
        began = time.perf_counter()
        try:
            socket = connect(
                url, open_timeout=OPEN_TIMEOUT_S, close_timeout=2, compression=None,
                max_size=None, ping_interval=None, legacy=True,
            )  # fmt: skip
        except (OSError, TimeoutError, WebSocketException) as error:
            detail = redact_text(f"{type(error).__name__}: {error}", scenario.token)
            recorder.error(self.client_id, recorder.now_ns(), ErrorKind.CONNECT_FAILED, detail)
            self._fire("connect", (time.perf_counter() - began) * 1000, RuntimeError(detail))
            # The user stops from its task: Locust logs a traceback for a StopUser raised
            # in on_start, and a refused connect is a recorded failure, not a crash.
            return False
        self._fire("connect", (time.perf_counter() - began) * 1000)
        self.socket = socket
        recorder.connected(self.client_id, self.audience, recorder.now_ns())
        self._receiver = gevent.spawn(self._receive, socket)
        return True

    def _receive(self, socket: ClientConnection) -> None:
        recorder = self.shared.recorder
        me = self.client_id
        count_receipt = self._receipt_sink()
        while True:
            try:
                frame = socket.recv()
            except ConnectionClosed as closed:
                if self.socket is socket:  # the server closed it, not on_stop
                    self.socket = None
                    recorder.dropped_by_server(me, recorder.now_ns(), f"{closed.rcvd}")
                return
            now = recorder.now_ns()
            if isinstance(frame, bytes):
                recorder.error(me, now, ErrorKind.BINARY_FRAME, f"{len(frame)} bytes")
                continue
            message = envelope.decode(frame)
            if message is not None:
                recorder.delivery(me, message.client, message.seq, now)
                count_receipt(now, (now - message.sent_ns) / 1e6)
            elif frame.startswith('{"message"') or frame.startswith('{"error"'):
                recorder.error(me, now, ErrorKind.ERROR_FRAME, frame)
                self._fire(ErrorKind.ERROR_FRAME, 0.0, RuntimeError(frame[:120]))
            else:
                recorder.error(me, now, ErrorKind.UNRECOGNIZED_FRAME, frame[:120])

    def _reconnect(self) -> bool:
        """After the server dropped the connection: rejoin the same audience as a new client
        (a new id keeps the old membership's end and the new one's start apart)."""
        self.client_id, _ = self.shared.next_user()
        self._seq = 0
        return self._connect()

    @task
    def send_open_loop(self) -> None:
        """Send on a fixed schedule whatever the receipts do (open loop)."""
        if self.socket is None:
            raise StopUser()
        clock = self.shared.recorder.now_ns
        interval_ns = int(self.shared.scenario.send_interval_s * 1e9)
        intended = clock() + int(random.uniform(0, interval_ns))
        while not self._stopping and self.shared.sending:
            wait_s = (intended - clock()) / 1e9
            if wait_s > 0 and self.shared.sending_stopped.wait(wait_s):
                return
            if self.socket is None and not (self.shared.sending and self._reconnect()):
                if not self.shared.sending:
                    return
                raise StopUser()
            if self.shared.sending and self.socket is not None:
                self._send(intended)
            intended += interval_ns

    def _send(self, intended_ns: int) -> None:
        assert self.socket is not None
        recorder = self.shared.recorder
        sent_ns = recorder.now_ns()
        seq = self._seq
        self._seq += 1
        text = envelope.encode(
            envelope.Envelope(self.client_id, seq, intended_ns, sent_ns),
            self.shared.scenario.message_bytes,
        )
        try:
            self.socket.send(envelope.sendmessage_frame(text))
        except (ConnectionClosed, OSError) as error:
            recorder.error(self.client_id, sent_ns, ErrorKind.SEND_FAILED, repr(error))
            self._fire("send", 0.0, error)
            return
        recorder.send(self.client_id, seq, intended_ns, sent_ns, len(text))
        self.shared.send_lags_ms.append((sent_ns - intended_ns) / 1e6)

    def on_stop(self) -> None:
        self._stopping = True
        socket, self.socket = self.socket, None
        if socket is None:
            return
        self.shared.recorder.disconnecting(self.client_id, self.shared.recorder.now_ns())
        socket.close()
        if self._receiver is not None:
            self._receiver.join(timeout=2)
            self._receiver.kill(block=False)
        receipt_stats(self.environment, REQUEST_TYPE, FANOUT).flush()
