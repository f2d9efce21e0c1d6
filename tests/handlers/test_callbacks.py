"""``callbacks`` against the @connections stub, on both ways of posting (boto3's
client and the signed one): backoff, transport errors, attempts that fit the
time left before the deadline, the signed client's errors equal to boto3's, its
signatures and session tokens, and its keep-alive connections."""

from __future__ import annotations

import datetime
import itertools
import json
import random
import select
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    SSLError,
)

import callbacks
from callbacks import PostClientKind, PostResult, management_client, post_client, post_with_retry
from pacing import FLOOR_RPS, Pacer
from tests.handlers.support import (
    GONE,
    GONE_UNTYPED,
    OK,
    SERVER_ERROR,
    THROTTLED,
    THROTTLED_UNTYPED,
    TOO_LARGE,
    ConnectionsStub,
    Reply,
    new_connection_id,
    sigv4_check,
    tls_server_context,
)

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient


class UpperBound(random.Random):
    """Backoff always at its cap, so the pauses are known."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Timed:
    """Hands out the real client for a budget; records each attempt's start, end and budget."""

    def __init__(self, endpoint: str, kind: PostClientKind) -> None:
        self.endpoint = endpoint
        self.kind = kind
        self.attempts: list[tuple[float, float]] = []
        self.ends: list[float] = []

    def __call__(self, budget_s: float) -> ApiGatewayManagementApiClient:
        self.attempts.append((time.monotonic(), budget_s))
        return cast("ApiGatewayManagementApiClient", self._Attempt(self, budget_s))

    class _Attempt:
        def __init__(self, timed: Timed, budget_s: float) -> None:
            self.timed = timed
            self.client = post_client(timed.endpoint, 4, budget_s, timed.kind)

        def post_to_connection(self, **kwargs: Any) -> Any:
            try:
                return self.client.post_to_connection(**kwargs)
            finally:
                self.timed.ends.append(time.monotonic())


def test_backs_off_between_attempts_after_a_5xx(
    stub: ConnectionsStub, post_client_kind: PostClientKind
) -> None:
    target = new_connection_id()
    stub.script(target, SERVER_ERROR, SERVER_ERROR, OK)
    timed = Timed(stub.url, post_client_kind)

    result = post_with_retry(timed, target, b"m", time.monotonic() + 10, 5, UpperBound())

    assert result is PostResult.DELIVERED
    starts = [at for at, _ in timed.attempts]
    assert len(starts) == len(timed.ends) == 3
    # Between one attempt's answer and the next attempt, full jitter at its cap:
    # 0.02 s, then 0.04 s.
    assert starts[1] - timed.ends[0] >= 0.02
    assert starts[2] - timed.ends[1] >= 0.04


def test_429s_are_paced_and_not_limited_by_max_attempts(
    stub: ConnectionsStub, post_client_kind: PostClientKind
) -> None:
    """Six 429s with ``max_attempts`` 2: still delivered, at the pacer's floor rate."""
    target = new_connection_id()
    stub.script(target, *[THROTTLED] * 6, OK)
    timed = Timed(stub.url, post_client_kind)
    pacer = Pacer(time.monotonic())

    result = post_with_retry(timed, target, b"m", time.monotonic() + 10, 2, UpperBound(), pacer)

    assert result is PostResult.DELIVERED
    assert len(stub.posts_to(target)) == 7
    assert pacer.throttles == 6
    starts = [at for at, _ in timed.attempts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 0.9 / FLOOR_RPS


def test_a_read_timeout_is_unknown_and_never_sent_again(
    stub: ConnectionsStub, post_client_kind: PostClientKind
) -> None:
    """The post was sent and may have been delivered: re-sending it is a likely duplicate."""
    target = new_connection_id()
    stub.script(target, Reply(200, delay_s=0.6), OK)
    short = cast("Any", lambda budget_s: post_client(stub.url, 4, 0.3, post_client_kind))

    result = post_with_retry(short, target, b"m", time.monotonic() + 10, 3, random.Random(1))

    assert result is PostResult.UNKNOWN
    assert len(stub.posts_to(target)) == 1


def test_a_refused_connection_is_retried_then_undelivered(
    aws_env: None, post_client_kind: PostClientKind
) -> None:
    """Nothing was sent: retrying cannot duplicate it, and giving up is certain loss."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    timed = Timed(f"http://127.0.0.1:{port}/test", post_client_kind)

    result = post_with_retry(timed, "c", b"m", time.monotonic() + 10, 3, random.Random(1))

    assert result is PostResult.UNDELIVERED
    assert len(timed.attempts) == 3


@pytest.mark.parametrize("error", [NoCredentialsError(), NoRegionError()], ids=str)
def test_missing_credentials_or_region_fail_at_once(error: Exception) -> None:
    """Not transient: retrying would only spend the invocation's time."""
    calls: list[float] = []

    class Broken:
        def post_to_connection(self, **_: Any) -> Any:
            calls.append(time.monotonic())
            raise error

    result = post_with_retry(
        lambda _budget: Broken(), "c", b"m", time.monotonic() + 10, 5, random.Random(1)
    )

    assert result is PostResult.FAILED
    assert len(calls) == 1


def test_no_attempt_too_short_to_hear_the_answer(
    stub: ConnectionsStub, post_client_kind: PostClientKind
) -> None:
    """Answers take 0.4 s: with 0.5 s left only a 0.3 s budget fits, whose read timeout
    (0.21 s) would time out on a post that is delivered anyway. It is not started."""
    target = new_connection_id()
    pacer = Pacer(time.monotonic())
    pacer.answered(0.0, 0.4)
    timed = Timed(stub.url, post_client_kind)

    result = post_with_retry(timed, target, b"m", time.monotonic() + 0.5, 5, UpperBound(), pacer)

    assert result is PostResult.UNDELIVERED
    assert timed.attempts == []
    assert stub.posts() == []


def test_every_attempt_fits_before_the_deadline(
    stub: ConnectionsStub, post_client_kind: PostClientKind
) -> None:
    """A recipient that never answers costs at most the time left, not 2 s + 5 s a try."""
    target = new_connection_id()
    stub.script(target, Reply(200, delay_s=3.0))
    timed = Timed(stub.url, post_client_kind)
    deadline = time.monotonic() + 1.2

    result = post_with_retry(timed, target, b"m", deadline, 5, random.Random(1))
    returned = time.monotonic()

    assert result is PostResult.UNKNOWN
    # One post reached the recipient: a busy host may time out a connect first (nothing sent,
    # so retried), but a post sent and left unanswered is never sent again.
    assert len(stub.posts_to(target)) == 1, timed.attempts
    for started, budget_s in timed.attempts:
        assert started + budget_s <= deadline
    assert returned - deadline < 0.25, f"returned {returned - deadline:.2f} s past the deadline"


def test_no_attempt_when_no_budget_fits(
    stub: ConnectionsStub, post_client_kind: PostClientKind
) -> None:
    target = new_connection_id()
    timed = Timed(stub.url, post_client_kind)

    result = post_with_retry(timed, target, b"m", time.monotonic() + 0.05, 5, random.Random(1))

    assert result is PostResult.UNDELIVERED
    assert timed.attempts == []
    assert stub.posts() == []


@pytest.mark.parametrize("budget_s", [7.0, 1.0, 0.1])
def test_management_clients_make_one_attempt_within_their_budget(
    aws_env: None, stub: ConnectionsStub, budget_s: float
) -> None:
    client = management_client(stub.url, 32, budget_s)
    config: Any = client.meta.config
    assert config.connect_timeout + config.read_timeout == pytest.approx(budget_s)
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert config.max_pool_connections == 32
    assert management_client(stub.url, 32, budget_s) is client


@pytest.mark.parametrize("budget_s", [7.0, 1.0, 0.1])
def test_signed_clients_time_out_within_their_budget(
    aws_env: None, stub: ConnectionsStub, budget_s: float
) -> None:
    client = callbacks.signed_client(stub.url, budget_s)
    assert client._connect_s + client._read_s == pytest.approx(budget_s)
    assert post_client(stub.url, 32, budget_s, "signed") is client
    assert post_client(stub.url, 32, budget_s, "boto3") is management_client(stub.url, 32, budget_s)


# --- the signed client keeps boto3's semantics -----------------------------------------


def _failure(client: Any, connection_id: str) -> ClientError:
    with pytest.raises(ClientError) as caught:
        client.post_to_connection(ConnectionId=connection_id, Data=b"m")
    return caught.value


@pytest.mark.parametrize(
    "reply",
    [
        GONE,
        GONE_UNTYPED,
        THROTTLED,
        THROTTLED_UNTYPED,
        Reply(429, "LimitExceededException:http://internal.amazon.com/coral/", "Rate"),
        SERVER_ERROR,
        Reply(503, None, "Service Unavailable"),
        Reply(500, "InternalServerErrorException", "Internal"),
        TOO_LARGE,
        Reply(403, "ForbiddenException", "Forbidden"),
        Reply(400, None, "Bad"),
    ],
    ids=lambda r: f"{r.status}-{r.error_type or 'bare'}",
)
def test_signed_errors_are_the_ones_boto3_raises(
    aws_env: None, stub: ConnectionsStub, reply: Reply
) -> None:
    """Same exception class, code, message and status: ``classify_error`` cannot tell them apart."""
    target = new_connection_id()
    stub.script(target, reply)

    by_boto3 = _failure(management_client(stub.url, 4), target)
    signed = _failure(callbacks.signed_client(stub.url), target)

    assert type(signed).__name__ == type(by_boto3).__name__
    assert signed.response["Error"] == by_boto3.response["Error"]
    assert signed.response["ResponseMetadata"]["HTTPStatusCode"] == reply.status
    assert by_boto3.response["ResponseMetadata"]["HTTPStatusCode"] == reply.status
    assert signed.response["ResponseMetadata"]["RequestId"]
    assert callbacks.classify_error(signed) is callbacks.classify_error(by_boto3)
    assert callbacks.is_throttle(signed) is callbacks.is_throttle(by_boto3)
    assert str(signed) == str(by_boto3)


def test_both_clients_sign_with_the_session_token(
    aws_env: None, stub: ConnectionsStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lambda's credentials are temporary: the token travels, signed, with every post."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIATESTKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "lambda-role-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "lambda-role-session-token")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found
    target = new_connection_id() + "/+="  # characters a path must encode

    for kind in callbacks.POST_CLIENTS:
        post_client(stub.url, 4, kind=kind).post_to_connection(ConnectionId=target, Data=b"m")

    posts = stub.posts_to(target)
    assert len(posts) == 2
    for request in posts:
        assert "/ASIATESTKEY/" not in request.path
        assert (request.header("Authorization") or "").startswith(
            "AWS4-HMAC-SHA256 Credential=ASIATESTKEY/"
        )
        assert sigv4_check(request, "lambda-role-secret", "lambda-role-session-token") == ""
        # Negative controls: the check does catch a wrong key or a missing token.
        assert "mismatch" in sigv4_check(request, "another-secret", "lambda-role-session-token")
        assert sigv4_check(request, "lambda-role-secret", "another-token") != ""
    assert posts[0].path == posts[1].path


def test_missing_credentials_fail_as_boto3_fails(
    aws_env: None, stub: ConnectionsStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found
    for kind in callbacks.POST_CLIENTS:
        client = post_client(stub.url, 4, kind=kind)
        with pytest.raises(NoCredentialsError):
            client.post_to_connection(ConnectionId=new_connection_id(), Data=b"m")
    assert stub.posts() == []


def test_a_missing_region_fails_as_boto3_fails(
    aws_env: None, stub: ConnectionsStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    for kind in callbacks.POST_CLIENTS:
        with pytest.raises(NoRegionError):
            post_client(stub.url, 4, kind=kind)


def test_a_refused_connection_is_a_transport_error_on_both(
    aws_env: None, post_client_kind: PostClientKind
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = post_client(f"http://127.0.0.1:{port}/test", 4, 0.3, post_client_kind)

    with pytest.raises(EndpointConnectionError):
        client.post_to_connection(ConnectionId=new_connection_id(), Data=b"m")


class _CountingServer(ThreadingHTTPServer):
    """Answers 200 to every POST; counts connections; optionally closes each after one reply
    without saying so (no ``Connection: close``), as an idle timeout on the server does."""

    daemon_threads = True
    close_after_reply = False
    connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


class _CountingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        server = self.server
        assert isinstance(server, _CountingServer)
        self.close_connection = server.close_after_reply

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def counting_server() -> Iterator[_CountingServer]:
    server = _CountingServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_posts_reuse_one_connection_per_thread(
    aws_env: None,
    counting_server: _CountingServer,
    post_client_kind: PostClientKind,
    tls: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over TLS too: the session tickets a TLS 1.3 server sends after the handshake must
    not make an idle connection look closed (a handshake per post)."""
    scheme = "http"
    if tls:
        context, ca_bundle = tls_server_context(tmp_path)
        counting_server.socket = context.wrap_socket(counting_server.socket, server_side=True)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_bundle))
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        scheme = "https"
    port = counting_server.server_address[1]
    client = post_client(f"{scheme}://127.0.0.1:{port}/test", 4, kind=post_client_kind)

    for _ in range(5):
        client.post_to_connection(ConnectionId=new_connection_id(), Data=b"m")
        time.sleep(0.02)  # anything the server sends unasked arrives while idle

    assert counting_server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(
    aws_env: None, counting_server: _CountingServer, post_client_kind: PostClientKind
) -> None:
    """Sending on it would fail the post; the idle check reconnects first, as urllib3 does."""
    counting_server.close_after_reply = True
    port = counting_server.server_address[1]
    client = post_client(f"http://127.0.0.1:{port}/test", 4, kind=post_client_kind)

    for _ in range(3):
        client.post_to_connection(ConnectionId=new_connection_id(), Data=b"m")
        time.sleep(0.1)  # the server's close reaches this side

    assert counting_server.connections == 3


# --- TLS, as on AWS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConnectionsStub, Path]]:
    context, ca_bundle = tls_server_context(tmp_path_factory.mktemp("tls"))
    stub = ConnectionsStub(tls=context)
    stub.start()
    yield stub, ca_bundle
    stub.stop()


def test_both_clients_post_over_tls_and_verify_the_certificate(
    aws_env: None, tls_stub: tuple[ConnectionsStub, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub, ca_bundle = tls_stub
    stub.reset()
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_bundle))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    delivered, gone = new_connection_id(), new_connection_id()
    stub.script(gone, GONE)

    for kind in callbacks.POST_CLIENTS:
        client = post_client(stub.url, 4, kind=kind)
        client.post_to_connection(ConnectionId=delivered, Data=b"over tls")
        error = _failure(client, gone)
        assert callbacks.classify_error(error) is callbacks.Outcome.GONE, kind

    assert [r.body for r in stub.posts_to(delivered)] == [b"over tls"] * 2
    assert len(stub.posts_to(gone)) == 2


def test_an_untrusted_certificate_is_a_transport_error_on_both(
    aws_env: None, tls_stub: tuple[ConnectionsStub, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``AWS_CA_BUNDLE``: the private CA is not trusted, and nothing is sent."""
    stub, _ = tls_stub
    stub.reset()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)

    for kind in callbacks.POST_CLIENTS:
        client = post_client(stub.url, 4, kind=kind)
        with pytest.raises(SSLError):
            client.post_to_connection(ConnectionId=new_connection_id(), Data=b"m")
    assert stub.posts() == []


class _CredentialsServer(ThreadingHTTPServer):
    """Container credentials (``AWS_CONTAINER_CREDENTIALS_FULL_URI``) that expire in
    5 minutes, inside botocore's mandatory refresh window: every use refreshes them,
    and each answer carries a new key."""

    daemon_threads = True
    served = 0


class _CredentialsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = cast("_CredentialsServer", self.server)
        server.served += 1
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        body = json.dumps(
            {
                "AccessKeyId": f"ASIAROTATED{server.served}",
                "SecretAccessKey": f"secret-{server.served}",
                "Token": f"token-{server.served}",
                "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_both_clients_sign_with_refreshed_credentials(
    aws_env: None, stub: ConnectionsStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm environment outlives temporary credentials: each post is signed with the
    credentials as they are now, never with a copy frozen when the client was built."""
    server = _CredentialsServer(("127.0.0.1", 0), _CredentialsHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(name)
        host, port = server.server_address[:2]
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://{host!s}:{port}/creds")
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        for kind in callbacks.POST_CLIENTS:
            target = new_connection_id()
            client = post_client(stub.url, 4, kind=kind)
            for _ in range(2):
                client.post_to_connection(ConnectionId=target, Data=b"m")
            first, second = stub.posts_to(target)
            keys = [
                (r.header("Authorization") or "").split("Credential=")[1].split("/")[0]
                for r in (first, second)
            ]
            assert keys[0] != keys[1], kind  # refreshed between the two posts
            for request, key in zip((first, second), keys, strict=True):
                serial = key.removeprefix("ASIAROTATED")
                assert sigv4_check(request, f"secret-{serial}", f"token-{serial}") == ""
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _TunnelProxy(ThreadingHTTPServer):
    """An HTTP proxy that only tunnels (CONNECT), recording each tunnel's target."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TunnelHandler)
        self.targets: list[str] = []


class _TunnelHandler(BaseHTTPRequestHandler):
    def do_CONNECT(self) -> None:
        server = cast("_TunnelProxy", self.server)
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=5)
        server.targets.append(self.path)
        self.send_response(200, "Connection established")
        self.end_headers()
        ends = [self.connection, upstream]
        deadline = time.monotonic() + 10  # a bound: the test is over long before
        try:
            while time.monotonic() < deadline:
                readable, _, _ = select.select(ends, [], [], 0.2)
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_both_clients_post_through_https_proxy(
    aws_env: None, tls_stub: tuple[ConnectionsStub, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a VPC's egress proxy: CONNECT through it, TLS (and its certificate check)
    end to end with API Gateway, as boto3 does."""
    stub, ca_bundle = tls_stub
    stub.reset()
    proxy = _TunnelProxy()
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = proxy.server_address[:2]
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_bundle))
        monkeypatch.setenv("HTTPS_PROXY", f"http://{host!s}:{port}")
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        target = new_connection_id()

        for kind in callbacks.POST_CLIENTS:
            post_client(stub.url, 4, kind=kind).post_to_connection(ConnectionId=target, Data=b"p")

        assert [r.body for r in stub.posts_to(target)] == [b"p"] * 2
        endpoint = urlsplit(stub.url)
        assert proxy.targets == [f"{endpoint.hostname}:{endpoint.port}"] * 2
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=5)
