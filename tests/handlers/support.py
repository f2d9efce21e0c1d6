"""Test doubles for the handler tests: AWS-shaped events, a Lambda-like context,
a scripted stand-in for API Gateway's @connections API, and a table helper.

The @connections stub is a real HTTP server: boto3 signs, sends, and parses its
answers exactly as it would API Gateway's, so a scripted 410 with
``x-amzn-ErrorType: GoneException`` reaches the handler as boto3's own
``GoneException``, and a bare 410 as a plain ``ClientError`` with code ``'410'``.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aws_limits import CONNECTION_KEY, ROOM_ATTRIBUTE, TTL_ATTRIBUTE
from connection_store import CONNECTED_AT, expires_at

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

STAGE = "test"
API_ID = "abcdef1234"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
CONNECTED_AT_MS = 1_700_000_000_123

Event = dict[str, Any]


def new_connection_id() -> str:
    """An id shaped like API Gateway's (``BFaT_fALIAMCKug=``): 16 characters, ``=``-padded."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


# --- Lambda-like context -------------------------------------------------------------


@dataclass
class LambdaContext:
    """The parts of Lambda's context object the handlers (may) touch."""

    remaining_ms: int = 10_000
    function_name: str = "fanbench-test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    memory_limit_in_mb: int = 1024
    _deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.remaining_ms / 1000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# --- API Gateway WebSocket events (shaped like captured AWS events) ------------------


def _request_context(
    connection_id: str, route_key: str, event_type: str, connected_at_ms: int
) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": base64.urlsafe_b64encode(os.urandom(11)).decode(),
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now_ms / 1000)),
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": connected_at_ms,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": "192.0.2.10", "userAgent": "pytest"},
        "requestId": base64.urlsafe_b64encode(os.urandom(11)).decode(),
        "domainName": DOMAIN,
        "connectionId": connection_id,
        "apiId": API_ID,
    }


def connect_event(
    connection_id: str,
    query: dict[str, str] | None = None,
    connected_at_ms: int = CONNECTED_AT_MS,
) -> Event:
    """``$connect``; ``queryStringParameters`` is absent when no query string was sent."""
    event: Event = {
        "headers": {
            "Host": DOMAIN,
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
            "X-Forwarded-Port": "443",
            "X-Forwarded-Proto": "https",
        },
        "multiValueHeaders": {"Host": [DOMAIN], "Sec-WebSocket-Version": ["13"]},
        "requestContext": _request_context(connection_id, "$connect", "CONNECT", connected_at_ms),
        "isBase64Encoded": False,
    }
    if query is not None:
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def disconnect_event(connection_id: str, connected_at_ms: int = CONNECTED_AT_MS) -> Event:
    context = _request_context(connection_id, "$disconnect", "DISCONNECT", connected_at_ms)
    context["disconnectStatusCode"] = 1001
    context["disconnectReason"] = "Going away"
    return {
        "headers": {"Host": DOMAIN, "x-api-key": "", "X-Forwarded-For": ""},
        "multiValueHeaders": {"Host": [DOMAIN]},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def message_event(
    connection_id: str,
    body: str | None,
    route_key: str = "sendmessage",
    connected_at_ms: int = CONNECTED_AT_MS,
) -> Event:
    """A MESSAGE event: no headers, a ``messageId``, the frame's text as ``body``."""
    context = _request_context(connection_id, route_key, "MESSAGE", connected_at_ms)
    context["messageId"] = base64.urlsafe_b64encode(os.urandom(11)).decode()
    event: Event = {"requestContext": context, "isBase64Encoded": False}
    if body is not None:
        event["body"] = body
    return event


def chat_body(message: object) -> str:
    return json.dumps({"action": "sendmessage", "message": message})


# --- the @connections API stand-in ---------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted answer from the @connections API."""

    status: int
    error_type: str | None = None
    """Sent as ``x-amzn-ErrorType``; ``None`` sends no type at all."""
    message: str = ""
    delay_s: float = 0.0


OK = Reply(200)
GONE = Reply(410, "GoneException", "Gone")
GONE_UNTYPED = Reply(410, None, "Gone")
THROTTLED = Reply(429, "LimitExceededException", "Rate exceeded")
THROTTLED_UNTYPED = Reply(429, None, "Too Many Requests")
SERVER_ERROR = Reply(500, None, "Internal server error")
TOO_LARGE = Reply(413, "PayloadTooLargeException", "Message too long")


@dataclass(frozen=True)
class Request:
    method: str
    connection_id: str
    body: bytes
    path: str = ""
    """As sent: percent-encoded."""
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """socketserver's default backlog of 5 drops SYNs under a 32-wide fan-out (1 s stalls)."""
    stub: ConnectionsStub


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the records are the log."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        assert isinstance(server, _StubServer)
        stub = server.stub
        prefix = f"/{stub.stage}/@connections/"
        path = urlsplit(self.path).path
        if not path.startswith(prefix) or len(path) == len(prefix):
            self._send(404, "NotFoundException", {"message": f"no route for {path}"})
            return
        connection_id = unquote(path[len(prefix) :])
        request = Request(self.command, connection_id, body, path, tuple(self.headers.items()))
        reply, epoch = stub.record_and_script(request)
        try:
            if reply.delay_s:
                time.sleep(reply.delay_s)
        finally:
            stub.done(epoch)  # before answering, so a caller's next request never overlaps
        self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        if reply.status >= 300:
            self._send(reply.status, reply.error_type, {"message": reply.message})
        elif self.command == "GET":
            self._send(
                200,
                None,
                {
                    "connectedAt": "2023-11-14T22:13:20.123Z",
                    "identity": {"sourceIp": "192.0.2.10", "userAgent": "pytest"},
                    "lastActiveAt": "2023-11-14T22:14:00.000Z",
                },
            )
        elif self.command == "DELETE":
            self._send(204, None, None)
        else:
            self._send(200, None, None)

    def _send(self, status: int, error_type: str | None, payload: object) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error_type is not None:
            self.send_header("x-amzn-ErrorType", error_type)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ConnectionsStub:
    """Serves ``/{stage}/@connections/{id}`` per a per-id script; records every request.

    A script is a list of replies, used in order; its last reply repeats. Ids with
    no script get 200.
    """

    def __init__(self, stage: str = STAGE, tls: ssl.SSLContext | None = None) -> None:
        self.stage = stage
        self._scheme = "https" if tls is not None else "http"
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self._requests: list[Request] = []
        self._in_flight = 0
        self._epoch = 0
        """Bumped by every reset: a request still being answered from before it is not counted."""
        self.max_in_flight = 0
        """The most requests this stub was answering at once since the last reset."""
        self._server = _StubServer(("127.0.0.1", 0), _StubHandler)
        self._server.stub = self
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}/{self.stage}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._requests.clear()
            self._forget_in_flight()

    def _forget_in_flight(self) -> None:
        self._epoch += 1
        self._in_flight = 0
        self.max_in_flight = 0

    def script(self, connection_id: str, *replies: Reply) -> None:
        if not replies:
            raise ValueError("a script needs at least one reply")
        with self._lock:
            self._scripts[connection_id] = list(replies)

    def record_and_script(self, request: Request) -> tuple[Reply, int]:
        """The reply for ``request``, and the epoch to hand back to ``done``."""
        with self._lock:
            self._requests.append(request)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            script = self._scripts.get(request.connection_id)
            if not script:
                return OK, self._epoch
            return (script.pop(0) if len(script) > 1 else script[0]), self._epoch

    def done(self, epoch: int) -> None:
        with self._lock:
            if epoch == self._epoch:
                self._in_flight -= 1

    def requests(self, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if method is None or r.method == method]

    def posts(self) -> list[Request]:
        return self.requests("POST")

    def posts_to(self, connection_id: str) -> list[Request]:
        return [r for r in self.posts() if r.connection_id == connection_id]

    def posted_ids(self) -> list[str]:
        return [r.connection_id for r in self.posts()]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._forget_in_flight()


# --- the connections table -----------------------------------------------------------


@dataclass
class Table:
    """A fresh connections table on moto's server, created from template.yaml."""

    name: str
    client: DynamoDBClient

    @staticmethod
    def item_for(
        connection_id: str,
        room: str | None = None,
        padding_bytes: int = 0,
        connected_at_ms: int = CONNECTED_AT_MS,
    ) -> dict[str, Any]:
        """An item as ``connection_store.put_connection`` writes it (plus optional padding).

        ``connected_at_ms`` defaults to 2023: long past any handshake.
        """
        item: dict[str, Any] = {
            CONNECTION_KEY: {"S": connection_id},
            CONNECTED_AT: {"N": str(connected_at_ms)},
            TTL_ATTRIBUTE: {"N": str(expires_at(connected_at_ms))},
        }
        if room is not None:
            item[ROOM_ATTRIBUTE] = {"S": room}
        if padding_bytes:
            item["padding"] = {"S": "x" * padding_bytes}
        return item

    def add(
        self,
        connection_ids: Iterable[str],
        room: str | None = None,
        padding_bytes: int = 0,
        connected_at_ms: int = CONNECTED_AT_MS,
    ) -> None:
        """Insert connections with BatchWriteItem (25 per call), as if each had connected."""
        items = [self.item_for(cid, room, padding_bytes, connected_at_ms) for cid in connection_ids]
        for start in range(0, len(items), 25):
            requests: Sequence[Any] = [
                {"PutRequest": {"Item": item}} for item in items[start : start + 25]
            ]
            pending: dict[str, Any] = {self.name: requests}
            while pending:
                response = self.client.batch_write_item(RequestItems=pending)
                pending = dict(response.get("UnprocessedItems", {}))

    def get(self, connection_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.name, Key={CONNECTION_KEY: {"S": connection_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return dict(item) if item is not None else None

    def ids(self) -> set[str]:
        """Every id in the table, following every scan page."""
        found: set[str] = set()
        kwargs: dict[str, Any] = {"TableName": self.name, "ProjectionExpression": CONNECTION_KEY}
        while True:
            page = self.client.scan(**kwargs)
            found.update(item[CONNECTION_KEY]["S"] for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --- SigV4, checked as API Gateway would -----------------------------------------------


def sigv4_check(request: Request, secret_key: str, session_token: str | None = None) -> str:
    """Why ``request``'s SigV4 signature is wrong for ``secret_key``; empty when it is right.

    Recomputes the signature with botocore's signer from what arrived: the
    headers the ``Authorization`` header names, the path as sent, the body and
    the ``X-Amz-Date`` timestamp.
    """
    authorization = request.header("Authorization") or ""
    fields = dict(
        part.strip().split("=", 1)
        for part in authorization.removeprefix("AWS4-HMAC-SHA256 ").split(",")
        if "=" in part
    )
    if not authorization.startswith("AWS4-HMAC-SHA256 ") or fields.keys() != {
        "Credential",
        "SignedHeaders",
        "Signature",
    }:
        return f"not a SigV4 Authorization header: {authorization!r}"
    access_key, _date, region, service, terminal = fields["Credential"].split("/")
    if (service, terminal) != ("execute-api", "aws4_request"):
        return f"signed for {service}/{terminal}, not execute-api/aws4_request"
    signed = fields["SignedHeaders"].split(";")
    headers = {name: request.header(name) or "" for name in signed}
    host = headers.get("host", "")
    resigned = AWSRequest(
        method=request.method, url=f"http://{host}{request.path}", data=request.body,
        headers=headers,
    )  # fmt: skip
    resigned.context["timestamp"] = request.header("X-Amz-Date") or ""
    signer = SigV4Auth(Credentials(access_key, secret_key, session_token), "execute-api", region)
    canonical = signer.canonical_request(resigned)
    expected = signer.signature(signer.string_to_sign(resigned, canonical), resigned)
    if expected != fields["Signature"]:
        return f"signature mismatch over {signed}"
    if session_token is not None:
        if request.header("X-Amz-Security-Token") != session_token:
            return "the session token was not sent"
        if "x-amz-security-token" not in signed:
            return "the session token was not signed"
    return ""


# --- TLS: a private CA and a certificate for 127.0.0.1 ---------------------------------


def tls_server_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context whose certificate (for IP 127.0.0.1) a fresh private CA signed,
    and that CA's PEM file, for ``AWS_CA_BUNDLE``."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: Any, is_ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        if is_ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("fanbench test CA", ca_key, "fanbench test CA", ca_key, is_ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate("127.0.0.1", server_key, "fanbench test CA", ca_key, is_ca=False)
    ca_path, chain_path, key_path = (directory / n for n in ("ca.pem", "chain.pem", "key.pem"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_path, key_path)
    return context, ca_path
