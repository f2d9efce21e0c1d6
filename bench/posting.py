"""Two ways to call @connections POST from Python, timed the same way.

* ``Boto3Poster``: the SDK's ``post_to_connection`` (what the handlers use).
  boto3 maps ``x-amzn-ErrorType: GoneException`` to ``GoneException``.
* ``SignedPoster``: ``botocore.auth.SigV4Auth`` + ``AWSRequest`` to sign, a
  ``urllib3.PoolManager`` to send. No error modelling: it must read the status
  itself (410 → gone, 429 → throttled), which is what a handler adopting it
  would have to do too.

Both talk only to the local stage on 127.0.0.1, with fake credentials (the
stage checks that an ``Authorization`` header is present, not the signature).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

import boto3
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from loadtest.stage.dynamodb import LOCAL_CREDENTIALS

Outcome = Literal["delivered", "gone", "throttled", "failed"]
REGION = LOCAL_CREDENTIALS["AWS_REGION"]
KEY = LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"]
SECRET = LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
READ_TIMEOUT_S = 10.0


def classify_status(status: int) -> Outcome:
    """What a raw HTTP status means for a post (boto3 does this from the error type)."""
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    if status == 429:
        return "throttled"
    return "failed"


class Poster(Protocol):
    def post(self, connection_id: str, data: bytes) -> Outcome: ...


class Boto3Poster:
    def __init__(self, callback_url: str, pool_size: int = 10) -> None:
        self.client: Any = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=callback_url,
            region_name=REGION,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            config=Config(
                max_pool_connections=max(10, pool_size),
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=2,
                read_timeout=READ_TIMEOUT_S,
            ),
        )

    def post(self, connection_id: str, data: bytes) -> Outcome:
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "GoneException":
                return "gone"
            if code == "LimitExceededException":
                return "throttled"
            return "failed"
        return "delivered"


class SignedPoster:
    """SigV4 per request (``sign_each``) or once (a header replayed: a load tool only)."""

    def __init__(self, callback_url: str, pool_size: int = 10, sign_each: bool = True) -> None:
        self.base = callback_url.rstrip("/")
        self.sign_each = sign_each
        self._signer = SigV4Auth(Credentials(KEY, SECRET), "execute-api", REGION)
        self._pool = urllib3.PoolManager(
            maxsize=pool_size,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=2.0, read=READ_TIMEOUT_S),
        )
        self._static: dict[str, str] | None = None

    def _url(self, connection_id: str) -> str:
        return f"{self.base}/@connections/{quote(connection_id, safe='')}"

    def _headers(self, url: str, data: bytes) -> dict[str, str]:
        if not self.sign_each and self._static is not None:
            return self._static
        request = AWSRequest(method="POST", url=url, data=data)
        self._signer.add_auth(request)
        headers = {name: str(value) for name, value in request.headers.items()}
        if not self.sign_each:
            self._static = headers
        return headers

    def post(self, connection_id: str, data: bytes) -> Outcome:
        url = self._url(connection_id)
        try:
            response = self._pool.request(
                "POST", url, body=data, headers=self._headers(url, data), preload_content=True
            )
        except urllib3.exceptions.HTTPError:
            return "failed"
        return classify_status(response.status)


@dataclass(frozen=True)
class PostRun:
    posts: int
    seconds: float
    cpu_s: float
    """``time.process_time()`` of this process over the run (every thread)."""
    outcomes: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.posts / self.seconds if self.seconds > 0 else float("nan")


def post_many(poster: Poster, ids: Sequence[str], data: bytes, threads: int = 1) -> PostRun:
    """Post ``data`` once to each id in order, on ``threads`` threads sharing ``poster``."""
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        began, cpu = time.perf_counter(), time.process_time()
        if pool is None:
            outcomes = [poster.post(cid, data) for cid in ids]
        else:
            outcomes = list(pool.map(lambda cid: poster.post(cid, data), ids))
        seconds, cpu_s = time.perf_counter() - began, time.process_time() - cpu
    finally:
        if pool is not None:
            pool.shutdown()
    return PostRun(len(outcomes), seconds, cpu_s, dict(Counter(outcomes)))
