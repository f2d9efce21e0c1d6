"""Lambda's Invoke API, the rules only (pure): paths, invocation types, errors, retries.

``POST /2015-03-31/functions/{FunctionName}/invocations`` with the payload as the
body; ``X-Amz-Invocation-Type`` picks ``RequestResponse`` (the default: 200 and
the function's result, ``X-Amz-Function-Error`` when it failed), ``Event``
(202 at once; Lambda queues the event and retries it) or ``DryRun`` (204).
Errors carry ``x-amzn-ErrorType`` so boto3 raises its modelled exceptions
(``ResourceNotFoundException``, ``TooManyRequestsException``, ...).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from fanbench_common.limits import (
    LAMBDA_ASYNC_MAX_EVENT_AGE_S,
    LAMBDA_ASYNC_PAYLOAD_BYTES,
    LAMBDA_ASYNC_RETRY_DELAYS_S,
    LAMBDA_ASYNC_THROTTLE_RETRY_MAX_S,
    LAMBDA_SYNC_PAYLOAD_BYTES,
)

INVOKE_PATH = re.compile(r"/2015-03-31/functions/(?P<function>[^/]+)/invocations")
FUNCTION_ARN = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:)?(?:\d{12}:)?(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?"
)
"""Every form Invoke accepts: a name, ``name:qualifier``, a partial or a full ARN."""
LATEST = "$LATEST"
UNHANDLED = "Unhandled"
"""``X-Amz-Function-Error`` for an error the function did not handle (all of them here)."""


class InvocationType(enum.Enum):
    REQUEST_RESPONSE = "RequestResponse"
    EVENT = "Event"
    DRY_RUN = "DryRun"


@dataclass(frozen=True)
class LambdaApiError:
    status: int
    error_type: str
    message: str

    def headers(self) -> dict[str, str]:
        return {"x-amzn-ErrorType": self.error_type, "Content-Type": "application/json"}

    def body(self) -> bytes:
        return json.dumps({"Type": "User", "message": self.message}).encode()


@dataclass(frozen=True)
class InvokeTarget:
    name: str
    qualifier: str | None


def function_not_found(identifier: str, region: str) -> LambdaApiError:
    return LambdaApiError(
        404,
        "ResourceNotFoundException",
        f"Function not found: arn:aws:lambda:{region}:000000000000:function:{identifier}",
    )


THROTTLED = LambdaApiError(429, "TooManyRequestsException", "Rate Exceeded.")
NOT_AN_INVOKE = LambdaApiError(404, "UnknownOperationException", "Unknown operation")


def parse_invoke_path(raw_path: str, query_qualifier: str | None = None) -> InvokeTarget | None:
    """The function an Invoke path names (``None``: not an Invoke path, or no valid name).

    boto3 percent-encodes the name (an ARN's colons become ``%3A``); a qualifier
    may come in the name (``name:alias``) or as ``?Qualifier=``.
    """
    match = INVOKE_PATH.fullmatch(raw_path.split("?", 1)[0])
    if match is None:
        return None
    identifier = FUNCTION_ARN.fullmatch(unquote(match.group("function")))
    if identifier is None:
        return None
    return InvokeTarget(identifier.group("name"), identifier.group("qualifier") or query_qualifier)


def not_emulated(reason: str) -> LambdaApiError:
    """A function the template creates that the local stage cannot run: not found here,
    with the line saying why."""
    return LambdaApiError(
        404, "ResourceNotFoundException", f"Function not emulated by the local stage: {reason}"
    )


def resolve(
    target: InvokeTarget | None,
    known: set[str],
    region: str,
    unemulated: Mapping[str, str] | None = None,
) -> str | LambdaApiError:
    """The known function's name, or the 404 Lambda answers (only ``$LATEST`` exists here);
    ``unemulated`` names, with why, the template's functions the stage cannot run."""
    if target is None:
        return NOT_AN_INVOKE
    if unemulated and target.name in unemulated:
        return not_emulated(unemulated[target.name])
    if target.name not in known or target.qualifier not in (None, LATEST):
        return function_not_found(target.name, region)
    return target.name


def invocation_type(header: str | None) -> InvocationType | LambdaApiError:
    if header is None or header == "":
        return InvocationType.REQUEST_RESPONSE
    try:
        return InvocationType(header)
    except ValueError:
        return LambdaApiError(
            400,
            "InvalidParameterValueException",
            f"1 validation error detected: Value '{header}' at 'invocationType' failed to "
            "satisfy constraint: Member must satisfy enum value set: "
            "[Event, RequestResponse, DryRun]",
        )


def payload_limit(kind: InvocationType) -> int:
    return LAMBDA_ASYNC_PAYLOAD_BYTES if kind is InvocationType.EVENT else LAMBDA_SYNC_PAYLOAD_BYTES


def parse_payload(body: bytes, kind: InvocationType) -> object | LambdaApiError:
    """The event the function will get; an empty body is ``{}``, as Lambda passes it."""
    limit = payload_limit(kind)
    if len(body) > limit:
        return LambdaApiError(
            413,
            "RequestEntityTooLargeException",
            f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
        )
    if not body.strip():
        return {}
    try:
        payload: object = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return LambdaApiError(
            400, "InvalidRequestContentException", "Could not parse request body into json"
        )
    return payload


def function_error_body(error: str) -> bytes:
    """What Lambda returns for an unhandled error: ``errorType: errorMessage`` split in two."""
    error_type, sep, message = error.partition(": ")
    if not sep or " " in error_type:
        error_type, message = "Error", error
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def is_throttle(error: str) -> bool:
    return error.startswith("TooManyRequestsException")


class Attempt(enum.Enum):
    """What became of one run of an asynchronous event."""

    SUCCEEDED = "succeeded"
    FUNCTION_ERROR = "function_error"
    """The handler raised, timed out or its environment died: retried twice at most."""
    THROTTLED = "throttled"
    """Lambda never ran it: retried with backoff until the event is too old."""


@dataclass(frozen=True)
class AsyncRetryPolicy:
    """AWS's retries of an asynchronous event, with delays a test can shorten.

    A function error is retried ``len(delays_s)`` times (AWS: twice, 1 min then
    2 min). A throttled event goes back on the queue and is retried from 1 s,
    doubling to at most 5 min, until it is ``max_event_age_s`` old (6 h).
    """

    delays_s: tuple[float, ...] = LAMBDA_ASYNC_RETRY_DELAYS_S
    throttle_first_s: float = 1.0
    throttle_max_s: float = LAMBDA_ASYNC_THROTTLE_RETRY_MAX_S
    max_event_age_s: float = LAMBDA_ASYNC_MAX_EVENT_AGE_S

    @classmethod
    def scaled(cls, first_delay_s: float) -> AsyncRetryPolicy:
        """AWS's schedule with the first delay set and every other interval scaled alike."""
        factor = first_delay_s / LAMBDA_ASYNC_RETRY_DELAYS_S[0]
        return cls(
            delays_s=tuple(d * factor for d in LAMBDA_ASYNC_RETRY_DELAYS_S),
            throttle_first_s=1.0 * factor,
            throttle_max_s=LAMBDA_ASYNC_THROTTLE_RETRY_MAX_S * factor,
            max_event_age_s=LAMBDA_ASYNC_MAX_EVENT_AGE_S * factor,
        )

    def next_delay_s(
        self, outcome: Attempt, function_errors: int, throttles: int, age_s: float
    ) -> float | None:
        """Seconds until the next run, or ``None`` when the event is done (or dropped).

        ``function_errors`` and ``throttles`` count the runs so far that ended so,
        this one included.
        """
        if outcome is Attempt.SUCCEEDED:
            return None
        if outcome is Attempt.FUNCTION_ERROR:
            if function_errors > len(self.delays_s):
                return None
            delay = self.delays_s[function_errors - 1]
        else:
            delay = min(self.throttle_max_s, self.throttle_first_s * 2 ** (throttles - 1))
        if age_s + delay > self.max_event_age_s:
            return None
        return delay
