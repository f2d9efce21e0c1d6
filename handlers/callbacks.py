"""The @connections management API: clients, error classification, retried posts.

Two clients can post (``POST_CLIENTS``; the ``POST_CLIENT`` setting picks one):

* ``boto3``: the SDK's ``post_to_connection``;
* ``signed``: ``SignedPostClient``, the same request signed by botocore's own
  SigV4 signer and sent on a keep-alive ``http.client`` connection per thread,
  without the SDK's request pipeline (parameter validation, event hooks, the
  retry handler, response parsing), which is most of boto3's CPU per post.
  Its failures are boto3's: a non-2xx answer raises the ``ClientError``
  subclass boto3 would (``GoneException``, ``LimitExceededException``, ...,
  or a bare ``ClientError`` with the status as its code), parsed by botocore's
  own rest-json parser, and transport failures raise
  botocore's own ``BotoCoreError`` subclasses. So ``classify_error`` and
  ``post_with_retry`` serve both unchanged. Credentials are read per request
  (refreshable ones refresh), and ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``
  are honoured as botocore honours them (an http:// proxy: CONNECT for https).
  It is the default (``settings.DEFAULT_POST_CLIENT``).
"""

from __future__ import annotations

import enum
import http.client
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast
from urllib.parse import quote, urlsplit

import boto3
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HeadersDict
from botocore.config import Config
from botocore.errorfactory import BaseClientExceptions, ClientExceptionsFactory
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import ProxyConfiguration, get_cert_path
from botocore.parsers import ResponseParser, create_parser
from botocore.utils import get_environ_proxies

from deadline import CALL_BUDGETS_S, call_budget_s, timeouts_s
from pacing import Pacer

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    """The connection no longer exists: its id is stale and should be deleted."""
    RETRYABLE = "retryable"
    """429 throttling or a 5xx: worth another try while time allows."""
    FAILED = "failed"
    """Will not succeed on retry (413, 400, 403, ...)."""


THROTTLE_CODES = frozenset({"LimitExceededException", "ThrottlingException", "TooManyRequests"})


def classify_error(error: ClientError) -> Outcome:
    """Map a failed post to an outcome.

    Typed ``GoneException`` and *any* 410 both mean gone: behind some proxies and
    emulators the error type header is missing and boto3 raises a bare
    ``ClientError`` with code ``'410'``.
    """
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "GoneException" or status == 410 or code == "410":
        return Outcome.GONE
    if code in THROTTLE_CODES or status == 429 or status >= 500:
        return Outcome.RETRYABLE
    return Outcome.FAILED


def is_throttle(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in THROTTLE_CODES or status == 429


def backoff_s(attempt: int, rng: random.Random, base_s: float = 0.02, cap_s: float = 1.0) -> float:
    """Full-jitter exponential backoff (AWS Architecture Blog, 2015)."""
    return rng.uniform(0.0, min(cap_s, base_s * 2**attempt))


PostClientKind = Literal["boto3", "signed"]
POST_CLIENTS: tuple[PostClientKind, ...] = ("boto3", "signed")


class ConnectionPoster(Protocol):
    """What posting needs of a client: boto3's and ``SignedPostClient`` both qualify."""

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> Any: ...  # noqa: N803 (boto3's names)


_clients: dict[tuple[str, float], ApiGatewayManagementApiClient] = {}
_clients_lock = threading.Lock()


def management_client(
    endpoint: str, pool_size: int, budget_s: float = CALL_BUDGETS_S[0]
) -> ApiGatewayManagementApiClient:
    """One client per endpoint and call budget per execution environment, reused while warm.

    Retries are ours (``post_with_retry``), so botocore makes a single attempt;
    its connect and read timeouts add up to ``budget_s`` (see ``deadline``).
    """
    key = (endpoint, budget_s)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            connect_s, read_s = timeouts_s(budget_s)
            config = Config(
                max_pool_connections=max(10, pool_size),
                connect_timeout=connect_s,
                read_timeout=read_s,
                retries={"mode": "standard", "total_max_attempts": 1},
            )
            client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)
            _clients[key] = client
        return client


def post_client(
    endpoint: str,
    pool_size: int,
    budget_s: float = CALL_BUDGETS_S[0],
    kind: PostClientKind = "boto3",
) -> ConnectionPoster:
    """A poster of ``kind`` for ``endpoint`` whose timeouts fit ``budget_s``, reused while warm."""
    if kind == "signed":
        return signed_client(endpoint, budget_s)
    return management_client(endpoint, pool_size, budget_s)


SIGNING_NAME = "execute-api"
"""The @connections API's SigV4 service name (boto3's service model says the same)."""
OPERATION = "PostToConnection"
PROTOCOL = "rest-json"
"""The @connections API's protocol (its service model says the same; a test holds them equal)."""
_HAS_POLL = getattr(select, "poll", None) is not None
"""poll(2) where the platform has it (Lambda: Linux); select(2) otherwise."""


class SignedPostClient:
    """``PostToConnection`` as one SigV4-signed POST on this thread's keep-alive connection.

    One instance per endpoint and call budget (as ``management_client``); the
    connections are per thread and per origin (``SigningIdentity.connections``),
    shared by every budget, and each request sets its socket's timeouts from its
    own budget.
    """

    def __init__(self, endpoint: str, budget_s: float, identity: SigningIdentity) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/") + "/@connections/"
        self._connect_s, self._read_s = timeouts_s(budget_s)
        self._identity = identity
        # HTTPS_PROXY / HTTP_PROXY / NO_PROXY, resolved as botocore resolves them for boto3.
        proxies = ProxyConfiguration(proxies=get_environ_proxies(self.endpoint))
        self._proxy_url: str | None = proxies.proxy_url_for(self.endpoint)
        self._proxy_headers: dict[str, str] = {}
        self._absolute = ""
        """The origin put before each path: requests to a plain-http proxy name their URL."""
        if self._proxy_url is not None:
            proxy = urlsplit(self._proxy_url)
            if proxy.scheme != "http" or not proxy.hostname:
                raise ValueError(f"only http:// proxies are supported: {self._proxy_url!r}")
            self._proxy = (proxy.hostname, proxy.port or 80)
            self._proxy_headers = dict(proxies.proxy_headers_for(self._proxy_url))
            if not self._https:
                self._absolute = self._origin

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        path = self._prefix + quote(ConnectionId, safe="")
        headers = self._identity.sign(self._origin + path, Data)
        status, response_headers, body = self._send(path, headers, Data)
        if 200 <= status < 300:
            return {"ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": 0}}
        raise self._identity.client_error(status, response_headers, body)

    def _send(
        self, path: str, headers: dict[str, str], data: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = self._connection()
        if self._absolute and self._proxy_headers:
            headers = {**headers, **self._proxy_headers}
        try:
            connection.request("POST", self._absolute + path, body=data, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except TimeoutError as error:
            connection.close()
            raise ReadTimeoutError(endpoint_url=self.endpoint, error=error) from error
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise ConnectionClosedError(endpoint_url=self.endpoint, error=error) from error
        if response.status >= 300:
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        return response.status, {}, body

    def _connection(self) -> http.client.HTTPConnection:
        held: dict[tuple[str, int, bool, str], http.client.HTTPConnection] | None
        connections = self._identity.connections
        held = getattr(connections, "held", None)
        if held is None:
            held = connections.held = {}
        key = (self._host, self._port, self._https, self._proxy_url or "")
        connection = held.get(key)
        if connection is None:
            connection = held[key] = self._new_connection()
        elif connection.sock is not None and _dropped(connection.sock):
            connection.close()  # the server closed it while idle: reconnect, as urllib3 does
        if connection.sock is None:
            connection.timeout = self._connect_s
            try:
                connection.connect()
            except TimeoutError as error:
                connection.close()
                raise ConnectTimeoutError(endpoint_url=self.endpoint, error=error) from error
            except ssl.SSLError as error:
                connection.close()
                raise SSLError(endpoint_url=self.endpoint, error=error) from error
            except OSError as error:
                connection.close()
                if self._proxy_url is not None:
                    raise ProxyConnectionError(proxy_url=self._proxy_url, error=error) from error
                raise EndpointConnectionError(endpoint_url=self.endpoint, error=error) from error
        connection.sock.settimeout(self._read_s)
        return connection

    def _new_connection(self) -> http.client.HTTPConnection:
        host, port = self._proxy if self._proxy_url is not None else (self._host, self._port)
        if self._https:
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=self._connect_s, context=self._identity.tls()
            )
            if self._proxy_url is not None:  # CONNECT through the proxy, then TLS end to end
                connection.set_tunnel(self._host, self._port, headers=self._proxy_headers)
            return connection
        return http.client.HTTPConnection(host, port, timeout=self._connect_s)


def _dropped(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable has been closed (or spoken on) by the server."""
    if not _HAS_POLL:
        return bool(select.select([sock], [], [], 0.0)[0])
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class SigningIdentity:
    """What signing and error modelling need from the environment, resolved once.

    Credentials, region and CA bundle come from a botocore session exactly as
    boto3's client would find them (environment, config files, container or
    instance metadata); refreshable credentials are frozen per request, as
    botocore's own signer does.
    """

    def __init__(self) -> None:
        session = botocore.session.get_session()
        region = session.get_config_variable("region")
        if not region:
            raise NoRegionError()
        self.region: str = region
        self._credentials = session.get_credentials()
        model = session.get_service_model("apigatewaymanagementapi")
        self._exceptions: BaseClientExceptions = ClientExceptionsFactory().create_client_exceptions(
            model
        )
        self._ca_bundle: str | None = session.get_config_variable("ca_bundle") or get_cert_path(
            True
        )
        self._tls: ssl.SSLContext | None = None
        self.connections = threading.local()
        """Per thread: the keep-alive connections, by (host, port, https), made under this
        identity's trust settings."""

    def sign(self, url: str, data: bytes) -> dict[str, str]:
        """The headers botocore's SigV4 signer adds: X-Amz-Date, Authorization, and the token."""
        request = AWSRequest(method="POST", url=url, data=data)
        if self._credentials is None:
            raise NoCredentialsError()  # as boto3 raises it: when the call is made
        frozen = self._credentials.get_frozen_credentials()
        SigV4Auth(frozen, SIGNING_NAME, self.region).add_auth(request)
        return dict(request.headers.items())

    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self._ca_bundle)
        return self._tls

    def client_error(self, status: int, headers: dict[str, str], body: bytes) -> ClientError:
        """The exception boto3 raises for this answer (botocore's rest-json error parsing)."""
        response = error_response(status, headers, body)
        error_class = cast(
            "type[ClientError]", self._exceptions.from_code(response["Error"]["Code"])
        )
        return error_class(response, OPERATION)  # type: ignore[arg-type]


_ERROR_PARSERS: dict[str, ResponseParser] = {}


def error_response(
    status: int, headers: dict[str, str], body: bytes, protocol: str = PROTOCOL
) -> dict[str, Any]:
    """The error boto3 reports for this answer, parsed by botocore's own parser for the
    service's protocol (rest-json), so the two clients cannot disagree on a code."""
    parser = _ERROR_PARSERS.get(protocol)
    if parser is None:
        parser = _ERROR_PARSERS.setdefault(protocol, create_parser(protocol))
    response = {
        "status_code": status,
        "headers": HeadersDict(headers),
        "body": body,
        "context": {"operation_name": OPERATION},
    }
    parsed: dict[str, Any] = parser.parse(response, None)  # type: ignore[arg-type]  # an error: no shape
    metadata = parsed.setdefault("ResponseMetadata", {})
    metadata["RetryAttempts"] = 0
    metadata["MaxAttemptsReached"] = True  # one attempt of one: retries are post_with_retry's
    return parsed


_signed: dict[tuple[str, float], SignedPostClient] = {}
_identity: list[SigningIdentity] = []
"""At most one: the environment's signing identity, resolved on first use."""


def signed_client(endpoint: str, budget_s: float = CALL_BUDGETS_S[0]) -> SignedPostClient:
    """One ``SignedPostClient`` per endpoint and call budget per execution environment."""
    key = (endpoint, budget_s)
    client = _signed.get(key)  # no lock on the hot path: a dict read is atomic
    if client is not None:
        return client
    with _clients_lock:
        client = _signed.get(key)
        if client is None:
            if not _identity:
                _identity.append(SigningIdentity())
            client = _signed[key] = SignedPostClient(endpoint, budget_s, _identity[0])
        return client


ClientForBudget = Callable[[float], ConnectionPoster]
"""Given a call budget in seconds, a client whose timeouts fit it."""


class PostResult(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    UNDELIVERED = "undelivered"
    """Certainly not delivered, and worth retrying, when the deadline came: still throttled,
    5xx or unreachable after the attempts allowed, or never attempted in time."""
    UNKNOWN = "unknown"
    """An attempt was sent and its answer never came (a read timeout): API Gateway may
    well have delivered it, so it is not sent again."""
    FAILED = "failed"
    """Will not succeed on retry: a 4xx other than 410/429, or no region or credentials."""


LATENCY_MARGIN = 1.5
"""An attempt starts only if its read timeout is at least this many times the slowest
answer seen so far in the invocation: a shorter one would likely time out on a post
that is delivered anyway, and a timed-out post is ``UNKNOWN``."""
MAX_THROTTLED_ATTEMPTS = 1_000
"""A bound on one post's 429 answers; the deadline ends the loop long before."""
TRANSIENT_TRANSPORT = (
    ConnectTimeoutError,
    EndpointConnectionError,
    ConnectionClosedError,
    ProxyConnectionError,
)
"""Transport failures where the request was not answered and is retried: it was never
sent, or the server closed the connection without answering (as it does to an idle
keep-alive connection; botocore's own retries treat it alike)."""


def transport_outcome(error: BotoCoreError) -> PostResult | None:
    """What a botocore (non-HTTP) error means for the post; None: retry it.

    A read timeout is ``UNKNOWN`` (the request was sent). A missing region or
    credentials, an untrusted certificate, or any other botocore error is
    ``FAILED``: retrying cannot change it.
    """
    if isinstance(error, ReadTimeoutError):
        return PostResult.UNKNOWN
    if isinstance(error, SSLError) or not isinstance(error, TRANSIENT_TRANSPORT):
        return PostResult.FAILED
    return None


def post_with_retry(
    client_for: ClientForBudget,
    connection_id: str,
    data: bytes,
    deadline: float,
    max_attempts: int,
    rng: random.Random,
    pacer: Pacer | None = None,
) -> PostResult:
    """Post once, until delivered, known gone or failed, or ``deadline``.

    * 429s are retried for as long as time allows, each attempt starting at the
      time the invocation's shared ``pacer`` gives it (``pacing``): throttled
      posts slow down together instead of giving up one by one;
    * 5xx answers and transient transport errors are retried with jittered
      backoff, ``max_attempts`` attempts in all;
    * every attempt, the first included, starts only if a call budget still fits
      before ``deadline`` and runs on a client whose timeouts fit that budget, so
      no attempt outlives the deadline by more than scheduling noise (a large
      throttled audience would otherwise run the invocation into Lambda's
      timeout, losing the stale-id cleanup and the metrics line); and only if
      that budget's read timeout is ``LATENCY_MARGIN`` times the slowest answer
      seen, so it can hear the answer;
    * an attempt whose answer never came (a read timeout) ends the post as
      ``UNKNOWN`` and is not retried. This is the deliberate choice between a
      possible loss and a likely duplicate: API Gateway delivers a post it has
      accepted whether or not its answer arrives in time. Re-posting them sent
      about 100 duplicate frames per broadcast at 400 ms per post and a 3 s
      timeout (issue 18); not re-posting them, none (BENCHMARKS.md, "At the
      limits"). A post the handler was too short of time to start is
      ``UNDELIVERED`` instead, which the receivers confirm.

    A post not attempted before the deadline is ``UNDELIVERED``.
    """
    pacer = pacer if pacer is not None else Pacer(time.monotonic())
    failures = 0
    for _ in range(max_attempts + MAX_THROTTLED_ATTEMPTS):
        now = time.monotonic()
        start = pacer.reserve(now, deadline - CALL_BUDGETS_S[-1])
        if start is None:
            break
        if start > now:
            time.sleep(start - now)
        budget_s = call_budget_s(deadline - time.monotonic())
        if budget_s is None or timeouts_s(budget_s)[1] < LATENCY_MARGIN * pacer.slowest_s:
            break
        client = client_for(budget_s)  # built outside the timing: a new client is not latency
        started = time.monotonic()
        if started + budget_s > deadline:
            continue  # building that budget's client took the time: pick a budget again
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
            pacer.delivered(started, time.monotonic())
            return PostResult.DELIVERED
        except ClientError as error:
            outcome = classify_error(error)
            if is_throttle(error):
                pacer.throttled(started, time.monotonic())
                continue
            pacer.answered(started, time.monotonic())
            if outcome is Outcome.GONE:
                return PostResult.GONE
            if outcome is Outcome.FAILED:
                return PostResult.FAILED
        except BotoCoreError as error:
            result = transport_outcome(error)
            if result is not None:
                return result
        failures += 1
        pause = backoff_s(failures - 1, rng)
        if failures >= max_attempts or time.monotonic() + pause >= deadline:
            break
        time.sleep(pause)
    return PostResult.UNDELIVERED
