"""Lambda Invoke protocol rules (pure): paths, invocation types, payloads, errors, retries."""

from __future__ import annotations

import json

import pytest

from fanbench_common.limits import (
    LAMBDA_ASYNC_MAX_EVENT_AGE_S,
    LAMBDA_ASYNC_PAYLOAD_BYTES,
    LAMBDA_SYNC_PAYLOAD_BYTES,
)
from loadtest.stage import invoke_rules as rules
from loadtest.stage.invoke_rules import AsyncRetryPolicy, Attempt, InvocationType, InvokeTarget

KNOWN = {"FanoutFunction", "SendMessageFunction"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/2015-03-31/functions/FanoutFunction/invocations", InvokeTarget("FanoutFunction", None)),
        (
            "/2015-03-31/functions/FanoutFunction%3A%24LATEST/invocations",
            InvokeTarget("FanoutFunction", "$LATEST"),
        ),
        (
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction"
            "%3AFanoutFunction/invocations",
            InvokeTarget("FanoutFunction", None),
        ),
        (
            "/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:F:live"
            "/invocations",
            InvokeTarget("F", "live"),
        ),
        (
            "/2015-03-31/functions/123456789012%3Afunction%3AFanoutFunction/invocations",
            InvokeTarget("FanoutFunction", None),
        ),
        ("/2015-03-31/functions/F/invocations?Qualifier=x", InvokeTarget("F", None)),
    ],
)
def test_parse_invoke_path_accepts_every_name_form(path: str, expected: InvokeTarget) -> None:
    assert rules.parse_invoke_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/2015-03-31/functions/F",
        "/2015-03-31/functions//invocations",
        "/2015-03-31/functions/a/b/invocations",
        "/2016-01-01/functions/F/invocations",
        "/2015-03-31/functions/bad%20name/invocations",
        "/2015-03-31/functions/" + "x" * 65 + "/invocations",
        "/local/@connections/abc",
    ],
)
def test_parse_invoke_path_rejects_what_is_not_an_invoke(path: str) -> None:
    assert rules.parse_invoke_path(path) is None


def test_a_query_qualifier_is_used_when_the_name_has_none() -> None:
    path = "/2015-03-31/functions/F/invocations"
    assert rules.parse_invoke_path(path, "$LATEST") == InvokeTarget("F", "$LATEST")
    assert rules.parse_invoke_path("/2015-03-31/functions/F:v1/invocations", "x") == (
        InvokeTarget("F", "v1")
    )


def test_resolve_finds_known_functions_at_latest_only() -> None:
    assert rules.resolve(InvokeTarget("FanoutFunction", None), KNOWN, "us-east-1") == (
        "FanoutFunction"
    )
    assert rules.resolve(InvokeTarget("FanoutFunction", "$LATEST"), KNOWN, "r") == "FanoutFunction"
    for target in (InvokeTarget("Nope", None), InvokeTarget("FanoutFunction", "live")):
        error = rules.resolve(target, KNOWN, "us-east-1")
        assert isinstance(error, rules.LambdaApiError)
        assert (error.status, error.error_type) == (404, "ResourceNotFoundException")
        assert target.name in error.message
    assert rules.resolve(None, KNOWN, "r") is rules.NOT_AN_INVOKE


def test_a_function_the_stage_cannot_run_is_not_found_with_the_reason() -> None:
    why = "Report: Runtime java21 is not emulated by the local stage"
    error = rules.resolve(InvokeTarget("Report", None), KNOWN, "r", {"Report": why})
    assert isinstance(error, rules.LambdaApiError)
    assert (error.status, error.error_type) == (404, "ResourceNotFoundException")
    assert error.message.endswith(why)
    assert rules.resolve(InvokeTarget("FanoutFunction", None), KNOWN, "r", {"Report": why}) == (
        "FanoutFunction"
    )


def test_errors_name_their_type_for_boto3() -> None:
    error = rules.function_not_found("X", "us-east-1")
    assert error.headers()["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert json.loads(error.body())["message"].endswith(":function:X")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, InvocationType.REQUEST_RESPONSE),
        ("", InvocationType.REQUEST_RESPONSE),
        ("RequestResponse", InvocationType.REQUEST_RESPONSE),
        ("Event", InvocationType.EVENT),
        ("DryRun", InvocationType.DRY_RUN),
    ],
)
def test_invocation_type(header: str | None, expected: InvocationType) -> None:
    assert rules.invocation_type(header) is expected


def test_an_unknown_invocation_type_is_a_400() -> None:
    error = rules.invocation_type("event")
    assert isinstance(error, rules.LambdaApiError)
    assert (error.status, error.error_type) == (400, "InvalidParameterValueException")


def test_payload_limits_differ_by_invocation_type() -> None:
    at_async_limit = b'"' + b"x" * (LAMBDA_ASYNC_PAYLOAD_BYTES - 2) + b'"'
    assert rules.parse_payload(at_async_limit, InvocationType.EVENT) == "x" * (
        LAMBDA_ASYNC_PAYLOAD_BYTES - 2
    )
    over = at_async_limit + b" "
    error = rules.parse_payload(over, InvocationType.EVENT)
    assert isinstance(error, rules.LambdaApiError)
    assert (error.status, error.error_type) == (413, "RequestEntityTooLargeException")
    assert isinstance(rules.parse_payload(over, InvocationType.REQUEST_RESPONSE), str)
    too_big = b" " * (LAMBDA_SYNC_PAYLOAD_BYTES + 1)
    error = rules.parse_payload(too_big, InvocationType.REQUEST_RESPONSE)
    assert isinstance(error, rules.LambdaApiError)
    assert error.status == 413


def test_payload_must_be_json_and_empty_is_an_empty_object() -> None:
    assert rules.parse_payload(b"", InvocationType.EVENT) == {}
    assert rules.parse_payload(b'{"a": [1]}', InvocationType.EVENT) == {"a": [1]}
    for bad in (b"{", b"\xff\xfe", b"nope"):
        error = rules.parse_payload(bad, InvocationType.REQUEST_RESPONSE)
        assert isinstance(error, rules.LambdaApiError)
        assert (error.status, error.error_type) == (400, "InvalidRequestContentException")


def test_function_error_body_splits_type_and_message() -> None:
    assert json.loads(rules.function_error_body("RuntimeError: boom: twice")) == {
        "errorMessage": "boom: twice",
        "errorType": "RuntimeError",
    }
    assert json.loads(rules.function_error_body("Task timed out after 3.00 seconds")) == {
        "errorMessage": "Task timed out after 3.00 seconds",
        "errorType": "Error",
    }


def test_is_throttle() -> None:
    assert rules.is_throttle("TooManyRequestsException: Rate Exceeded.")
    assert not rules.is_throttle("RuntimeError: fanbench injected a Lambda error")


# --- AWS's retries of an asynchronous event ------------------------------------------


def test_function_errors_are_retried_twice_after_one_then_two_minutes() -> None:
    policy = AsyncRetryPolicy()
    assert policy.next_delay_s(Attempt.FUNCTION_ERROR, 1, 0, 0.0) == 60.0
    assert policy.next_delay_s(Attempt.FUNCTION_ERROR, 2, 0, 60.0) == 120.0
    assert policy.next_delay_s(Attempt.FUNCTION_ERROR, 3, 0, 180.0) is None


def test_success_ends_the_event() -> None:
    assert AsyncRetryPolicy().next_delay_s(Attempt.SUCCEEDED, 0, 0, 0.0) is None
    assert AsyncRetryPolicy().next_delay_s(Attempt.SUCCEEDED, 2, 5, 100.0) is None


def test_throttles_back_off_exponentially_to_five_minutes_until_six_hours() -> None:
    policy = AsyncRetryPolicy()
    delays = [policy.next_delay_s(Attempt.THROTTLED, 0, n, 0.0) for n in range(1, 12)]
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert delays[-1] == 300.0
    assert all(d is not None and d <= 300.0 for d in delays)
    # throttles do not use up the two function-error retries
    assert policy.next_delay_s(Attempt.FUNCTION_ERROR, 1, 9, 10.0) == 60.0
    assert policy.next_delay_s(Attempt.THROTTLED, 0, 3, LAMBDA_ASYNC_MAX_EVENT_AGE_S - 1) is None


def test_scaled_policy_keeps_the_shape() -> None:
    policy = AsyncRetryPolicy.scaled(0.5)
    assert policy.delays_s == (0.5, 1.0)
    assert policy.next_delay_s(Attempt.FUNCTION_ERROR, 3, 0, 1.5) is None
    assert policy.max_event_age_s == pytest.approx(LAMBDA_ASYNC_MAX_EVENT_AGE_S / 120)
    zero = AsyncRetryPolicy.scaled(0.0)
    assert zero.next_delay_s(Attempt.FUNCTION_ERROR, 1, 0, 0.0) == 0.0
