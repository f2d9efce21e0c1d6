"""Server-side metrics: the pure query/document/cost arithmetic, then ``fanbench fetch-metrics``
against moto's CloudFormation, Lambda and CloudWatch in server mode (never AWS itself)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

import emf
from fanbench.cli import main
from fanbench_common.resources import (
    CONNECT_FUNCTION,
    DEFAULT_FUNCTION,
    DISCONNECT_FUNCTION,
    SEND_FUNCTION,
)
from fanbench_common.rundir import read_run, write_run
from reports import cloudwatch as cw
from reports.cloudwatch_fetch import fetch
from reports.cost import cost_from_counts
from reports.prices import Prices
from reports.render import write_report
from tests.reports.synthetic import START_NS, build_run

T0 = datetime(2026, 11, 30, 3, 0, 0, tzinfo=UTC)
NS = 1_000_000_000


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS


# ---------------------------------------------------------------- the window


def test_the_window_is_the_run_widened_to_whole_minutes() -> None:
    window = cw.metric_window(ns(T0) + 17 * NS, ns(T0) + 200 * NS, now=T0 + timedelta(hours=1))
    assert (window.start, window.end) == (T0, T0 + timedelta(minutes=4))
    assert window.period_s == 240


def test_a_run_within_one_minute_still_gets_a_whole_period() -> None:
    window = cw.metric_window(ns(T0) + NS, ns(T0) + 2 * NS, now=T0 + timedelta(minutes=5))
    assert (window.start, window.period_s) == (T0, 60)
    exact = cw.metric_window(ns(T0), ns(T0), now=T0)
    assert (exact.start, exact.period_s) == (T0, 60)


@pytest.mark.parametrize(
    ("age", "step"),
    [(timedelta(days=14), 60), (timedelta(days=20), 300), (timedelta(days=90), 3600)],
)
def test_older_runs_get_the_coarser_periods_cloudwatch_still_keeps(
    age: timedelta, step: int
) -> None:
    start = T0 + timedelta(seconds=30)
    window = cw.metric_window(ns(start), ns(start) + 10 * NS, now=start + age)
    assert window.period_s == step
    assert window.start.timestamp() % step == 0
    assert window.start <= start < window.end


# ---------------------------------------------------------------- names


def test_the_stack_names_functions_api_stage_and_table() -> None:
    resources = [
        {"LogicalResourceId": SEND_FUNCTION, "ResourceType": "AWS::Lambda::Function",
         "PhysicalResourceId": "chat-SendMessageFunction-ABC"},
        {"LogicalResourceId": CONNECT_FUNCTION, "ResourceType": "AWS::Lambda::Function",
         "PhysicalResourceId": "chat-ConnectFunction-DEF"},
        {"LogicalResourceId": "SendMessageFunctionRole", "ResourceType": "AWS::IAM::Role",
         "PhysicalResourceId": "chat-role"},
        {"LogicalResourceId": "ChatApi", "ResourceType": "AWS::ApiGatewayV2::Api",
         "PhysicalResourceId": "a1b2c3"},
        {"LogicalResourceId": "Stage", "ResourceType": "AWS::ApiGatewayV2::Stage",
         "PhysicalResourceId": "prod"},
        {"LogicalResourceId": "ConnectionsTable", "ResourceType": "AWS::DynamoDB::Table",
         "PhysicalResourceId": "chat-ConnectionsTable-XYZ"},
        {"LogicalResourceId": DEFAULT_FUNCTION, "ResourceType": "AWS::Lambda::Function",
         "ResourceStatus": "CREATE_IN_PROGRESS"},
    ]  # fmt: skip
    parts = cw.stack_parts(resources)
    assert parts.functions == {
        CONNECT_FUNCTION: "chat-ConnectFunction-DEF",
        SEND_FUNCTION: "chat-SendMessageFunction-ABC",
    }
    assert (parts.api_id, parts.stage, parts.table) == (
        "a1b2c3",
        "prod",
        "chat-ConnectionsTable-XYZ",
    )


def test_an_execute_api_url_names_its_api_region_and_stage() -> None:
    url = "wss://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod"
    assert cw.target_api(url) == ("a1b2c3d4e5", "eu-west-1", "prod")
    assert cw.target_api(url + "/?token=x") == ("a1b2c3d4e5", "eu-west-1", "prod")
    assert cw.target_api("wss://chat.example.com/prod") is None
    assert cw.target_api("ws://127.0.0.1:8080/local") is None
    assert cw.target_api("wss://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/") is None


def test_the_emf_namespace_is_the_handlers() -> None:
    assert cw.EMF_NAMESPACE == emf.NAMESPACE


def test_emf_metrics_of_another_variant_are_left_out() -> None:
    listed: list[dict[str, Any]] = [
        {"MetricName": "FanoutMs", "Dimensions": [{"Name": "Variant", "Value": "optimized"}]},
        {"MetricName": "Delivered", "Dimensions": [{"Name": "Variant", "Value": "optimized"}]},
        {"MetricName": "Delivered", "Dimensions": [{"Name": "Variant", "Value": "baseline"}]},
        {"MetricName": "Delivered", "Dimensions": []},
    ]
    assert cw.emf_metrics(listed, "optimized") == [
        ("Delivered", ()), ("Delivered", (("Variant", "optimized"),)),
        ("FanoutMs", (("Variant", "optimized"),)),
    ]  # fmt: skip
    assert len(cw.emf_metrics(listed, "")) == 4


# ---------------------------------------------------------------- queries


def small_plan() -> cw.Plan:
    parts = cw.StackParts({SEND_FUNCTION: "send-fn"}, table="chat-table")
    emf_listed = [
        ("Delivered", (("Variant", "optimized"),)),
        ("FanoutMs", (("Variant", "optimized"),)),
    ]
    return cw.plan(parts, ("a1b2c3", "prod"), emf_listed)


def test_the_plan_asks_for_every_figure_the_issue_names() -> None:
    the_plan = small_plan()
    asked = {(w.namespace, w.name, w.stat, w.dimensions) for w in the_plan.figures}
    api_dims = (("ApiId", "a1b2c3"), ("Stage", "prod"))
    for metric in (
        "ConnectCount",
        "MessageCount",
        "ClientError",
        "ExecutionError",
        "IntegrationError",
    ):
        assert ("AWS/ApiGateway", metric, "Sum", api_dims) in asked
    fn = (("FunctionName", "send-fn"),)
    for metric, stat in [("Invocations", "Sum"), ("Errors", "Sum"), ("Throttles", "Sum"),
                         ("Duration", "Sum"), ("Duration", "SampleCount"), ("Duration", "Maximum"),
                         ("ConcurrentExecutions", "Maximum")]:  # fmt: skip
        assert ("AWS/Lambda", metric, stat, fn) in asked
    assert ("AWS/Lambda", "ConcurrentExecutions", "Maximum", ()) in asked
    assert (
        "AWS/DynamoDB",
        "ConsumedReadCapacityUnits",
        "Sum",
        (("TableName", "chat-table"),),
    ) in asked
    variant = (("Variant", "optimized"),)
    assert ("fanbench", "Delivered", "Sum", variant) in asked
    assert ("fanbench", "FanoutMs", "SampleCount", variant) in asked
    assert [(w.namespace, w.name) for w in the_plan.percentiles] == [
        ("AWS/Lambda", "Duration"), ("fanbench", "FanoutMs"),
    ]  # fmt: skip


def test_get_metric_data_requests_cover_the_window_in_one_period_and_at_most_500_queries() -> None:
    window = cw.Window(T0, T0 + timedelta(minutes=3))
    wanted = small_plan().figures * 30
    requests = cw.metric_data_requests(wanted, window)
    assert [len(r["MetricDataQueries"]) for r in requests] == [500] * (len(wanted) // 500) + (
        [len(wanted) % 500] if len(wanted) % 500 else []
    )
    ids = [q["Id"] for r in requests for q in r["MetricDataQueries"]]
    assert ids == [f"q{i}" for i in range(len(wanted))]
    first = requests[0]
    assert (first["StartTime"], first["EndTime"]) == (T0, T0 + timedelta(minutes=3))
    stat = first["MetricDataQueries"][0]["MetricStat"]
    assert (stat["Period"], stat["Stat"]) == (180, "Sum")
    assert stat["Metric"] == {
        "Namespace": "AWS/ApiGateway", "MetricName": "ConnectCount",
        "Dimensions": [{"Name": "ApiId", "Value": "a1b2c3"}, {"Name": "Stage", "Value": "prod"}],
    }  # fmt: skip


def test_percentiles_are_asked_as_extended_statistics_over_the_whole_window() -> None:
    window = cw.Window(T0, T0 + timedelta(minutes=2))
    request = cw.statistics_request(small_plan().percentiles[0], window)
    assert request == {
        "Namespace": "AWS/Lambda", "MetricName": "Duration",
        "Dimensions": [{"Name": "FunctionName", "Value": "send-fn"}],
        "StartTime": T0, "EndTime": T0 + timedelta(minutes=2), "Period": 120,
        "ExtendedStatistics": ["p50", "p99"],
    }  # fmt: skip


# ---------------------------------------------------------------- answers → document


def test_answers_become_the_schema_versioned_document() -> None:
    the_plan = small_plan()
    index = {(w.path, w.stat): f"q{i}" for i, w in enumerate(the_plan.figures)}

    def q(*path: str, stat: str = "Sum") -> str:
        return index[(path, stat)]

    pages: list[dict[str, Any]] = [
        {"MetricDataResults": [
            {"Id": q("api_gateway", "metrics", "ConnectCount"), "Values": [7.0]},
            {"Id": q("functions", SEND_FUNCTION, "Invocations"), "Values": [40.0, 2.0]},
            {"Id": q("functions", SEND_FUNCTION, "duration_ms", "Sum"), "Values": [840.0]},
            {"Id": q("functions", SEND_FUNCTION, "duration_ms", "SampleCount", stat="SampleCount"),
             "Values": [42.0]},
            {"Id": q("functions", SEND_FUNCTION, "duration_ms", "Maximum", stat="Maximum"),
             "Values": [31.0, 55.0]},
            {"Id": q("functions", SEND_FUNCTION, "concurrent_max", stat="Maximum"),
             "Values": [3.0]},
        ]},
        {"MetricDataResults": [
            {"Id": q("emf", "Variant=optimized", "counts", "Delivered"), "Values": [160.0]},
            {"Id": q("functions", SEND_FUNCTION, "Errors"), "Values": []},
        ]},
    ]  # fmt: skip
    values = cw.values_by_query(pages)
    percentiles = [
        cw.percentile_values([{"ExtendedStatistics": {"p50": 18.5, "p99": 52.0}}]),
        cw.percentile_values([]),
    ]
    document = cw.document(the_plan, values, percentiles, {"region": "eu-west-1", "stack": "chat"})
    assert (document["schema_version"], document["source"]) == (1, "cloudwatch")
    assert document["api_gateway"]["metrics"]["ConnectCount"] == 7.0
    assert document["api_gateway"]["metrics"]["MessageCount"] is None
    send = document["functions"][SEND_FUNCTION]
    assert (send["Invocations"], send["Errors"], send["concurrent_max"]) == (42.0, None, 3.0)
    assert send["duration_ms"] == {
        "sum": 840.0, "samples": 42.0, "mean": 20.0, "max": 55.0, "p50": 18.5, "p99": 52.0,
    }  # fmt: skip
    group = document["emf"]["Variant=optimized"]
    assert group["dimensions"] == {"Variant": "optimized"}
    assert group["counts"]["Delivered"] == 160.0
    assert group["durations_ms"]["FanoutMs"] == {
        "sum": None, "samples": None, "mean": None, "max": None, "p50": None, "p99": None,
    }  # fmt: skip
    assert cw.read_document(json.dumps(document), "x") == document


def test_percentiles_of_several_periods_are_not_merged() -> None:
    two = [{"ExtendedStatistics": {"p50": 1.0, "p99": 2.0}}] * 2
    assert cw.percentile_values(two) == {"p50": None, "p99": None}
    assert cw.percentile_values([{"ExtendedStatistics": {"p99": 2.0}}]) == {"p50": None, "p99": 2.0}


def test_a_document_of_another_schema_is_refused() -> None:
    with pytest.raises(cw.MetricsError, match="schema version 7"):
        cw.read_document('{"schema_version": 7}', "server/cloudwatch.json")
    with pytest.raises(cw.MetricsError, match="not valid JSON"):
        cw.read_document("{", "server/cloudwatch.json")


# ---------------------------------------------------------------- cost from counts


def test_cost_from_counts_multiplies_what_aws_counted() -> None:
    prices = Prices()
    cost = cost_from_counts(
        prices,
        api_gateway_messages=2_000_000,
        connection_minutes=4_000_000,
        functions={
            SEND_FUNCTION: {
                "requests": 1_000_000,
                "duration_ms_sum": 50_000_000,
                "memory_mb": 1024,
            },
            CONNECT_FUNCTION: {
                "requests": 500_000,
                "duration_ms_sum": 10_000_000,
                "memory_mb": None,
            },
            DISCONNECT_FUNCTION: {"requests": None, "duration_ms_sum": None, "memory_mb": 256},
        },
        dynamodb_read_units=8_000_000,
        dynamodb_write_units=None,
    )
    lines = cost["breakdown_usd"]
    assert lines["api_gateway_messages"] == pytest.approx(2.0)
    assert lines["api_gateway_connection_minutes"] == pytest.approx(1.0)
    assert lines["sendmessage_requests"] == pytest.approx(0.2)
    # 50,000 s at 1 GB, and 10,000 s at template.yaml's 256 MB for ConnectFunction.
    assert lines["sendmessage_compute"] == pytest.approx(50_000 * prices.lambda_per_gb_second)
    assert lines["connection_lambda_requests"] == pytest.approx(0.1)
    assert lines["connection_lambda_compute"] == pytest.approx(2_500 * prices.lambda_per_gb_second)
    assert lines["dynamodb_reads"] == pytest.approx(1.0)
    assert lines["dynamodb_writes"] == 0.0
    assert cost["run_total_usd"] == pytest.approx(sum(lines.values()))
    assert cost["unknown"] == [
        "connection_lambda_compute", "connection_lambda_requests", "dynamodb_writes",
    ]  # fmt: skip


# ---------------------------------------------------------------- moto, in server mode

API_ID, STAGE, REGION, STACK = "a1b2c3d4e5", "prod", "eu-west-1", "chat"
ACCESS_KEY, SECRET_KEY = "AKIAFANBENCHTEST0001", "fanbench-test-secret-never-stored"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def only_these_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """boto3's usual chain finds the environment's keys, and no file or instance role."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_DEFAULT_REGION"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def client(moto_url: str, service: str) -> Any:
    make: Any = boto3.client  # the stubs type each service's name as a literal
    return make(service, endpoint_url=moto_url, region_name=REGION)


def function(name: str, memory_mb: int) -> dict[str, Any]:
    return {"Type": "AWS::Lambda::Function", "Properties": {
        "FunctionName": name, "Runtime": "python3.12", "Handler": "app.handler",
        "MemorySize": memory_mb, "Role": {"Fn::GetAtt": ["Role", "Arn"]},
        "Code": {"ZipFile": "def handler(event, context):\n    return None\n"},
    }}  # fmt: skip


@pytest.fixture(scope="module")
def stack(moto_url: str) -> dict[str, str]:
    """A stack like template.yaml's: the four functions (by their logical IDs) and the table."""
    names = {SEND_FUNCTION: "chat-send", CONNECT_FUNCTION: "chat-connect",
             DISCONNECT_FUNCTION: "chat-disconnect", DEFAULT_FUNCTION: "chat-default"}  # fmt: skip
    memory = {SEND_FUNCTION: 1024}
    template = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"Service": "lambda.amazonaws.com"}}]}}},
        **{logical: function(name, memory.get(logical, 256)) for logical, name in names.items()},
        "ConnectionsTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TableName": "chat-connections", "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "connectionId", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "connectionId", "KeyType": "HASH"}]}},
    }}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        client(moto_url, "cloudformation").create_stack(
            StackName=STACK, TemplateBody=json.dumps(template)
        )
    return names


RUN_START = datetime(2026, 11, 30, 2, 10, 5, tzinfo=UTC)
"""The run (12 s) sits in [02:10, 02:11) once widened; data just outside must not count."""


def put(moto_url: str, namespace: str, name: str, dims: dict[str, str], values: list[float],
        at: datetime, unit: str = "Count") -> None:  # fmt: skip
    client(moto_url, "cloudwatch").put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
             "Timestamp": at + timedelta(milliseconds=100 * i), "Value": value, "Unit": unit}
            for i, value in enumerate(values)
        ],
    )  # fmt: skip


@pytest.fixture(scope="module")
def metrics(moto_url: str, stack: dict[str, str]) -> None:
    inside, before, after = (RUN_START + timedelta(seconds=20), RUN_START - timedelta(minutes=3),
                             RUN_START + timedelta(minutes=4))  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        api = {"ApiId": API_ID, "Stage": STAGE}
        put(moto_url, "AWS/ApiGateway", "ConnectCount", api, [5.0], inside)
        put(moto_url, "AWS/ApiGateway", "ConnectCount", api, [100.0], before)
        put(moto_url, "AWS/ApiGateway", "MessageCount", api, [50.0, 60.0], inside)
        put(moto_url, "AWS/ApiGateway", "MessageCount", api, [999.0], after)
        put(moto_url, "AWS/ApiGateway", "ExecutionError", api, [0.0], inside)
        send = {"FunctionName": stack[SEND_FUNCTION]}
        put(moto_url, "AWS/Lambda", "Invocations", send, [20.0, 30.0], inside)
        put(moto_url, "AWS/Lambda", "Errors", send, [1.0], inside)
        put(moto_url, "AWS/Lambda", "Throttles", send, [0.0], inside)
        put(
            moto_url,
            "AWS/Lambda",
            "Duration",
            send,
            [10.0, 20.0, 30.0, 40.0],
            inside,
            "Milliseconds",
        )
        put(moto_url, "AWS/Lambda", "ConcurrentExecutions", send, [2.0, 4.0, 3.0], inside)
        connect = {"FunctionName": stack[CONNECT_FUNCTION]}
        put(moto_url, "AWS/Lambda", "Invocations", connect, [5.0], inside)
        put(moto_url, "AWS/Lambda", "Duration", connect, [12.0] * 5, inside, "Milliseconds")
        table = {"TableName": "chat-connections"}
        put(moto_url, "AWS/DynamoDB", "ConsumedReadCapacityUnits", table, [25.0], inside)
        put(moto_url, "AWS/DynamoDB", "ConsumedWriteCapacityUnits", table, [10.0], inside)
        optimized, baseline = {"Variant": "optimized"}, {"Variant": "baseline"}
        put(moto_url, emf.NAMESPACE, "Recipients", optimized, [4.0] * 50, inside)
        put(moto_url, emf.NAMESPACE, "Delivered", optimized, [4.0] * 49 + [3.0], inside)
        put(moto_url, emf.NAMESPACE, "Gone", optimized, [0.0] * 49 + [1.0], inside)
        put(moto_url, emf.NAMESPACE, "Delivered", baseline, [1000.0], inside)
        put(
            moto_url, emf.NAMESPACE, "FanoutMs", optimized, [8.0, 9.0, 12.0], inside, "Milliseconds"
        )


@pytest.fixture
def aws_run(tmp_path: Path) -> Path:
    """A run (synthetic records) that targeted the API on AWS, moved in time to RUN_START."""
    run = read_run(build_run(tmp_path / "run", clients=5, messages_per_sender=10))
    shift = ns(RUN_START) - START_NS

    def moved(table: dict[str, Any], *columns: str) -> dict[str, Any]:
        return {k: v + shift if k in columns and k != "disconnected_ns" else v
                for k, v in table.items()}  # fmt: skip

    meta = {k: v for k, v in run.meta.items() if k != "schema_version"}
    meta["times"] = {key: value + shift for key, value in meta["times"].items()}
    meta["target"] = f"wss://{API_ID}.execute-api.{REGION}.amazonaws.com/{STAGE}"
    write_run(run.path, meta, {
        "sends": moved(run.sends, "intended_ns", "sent_ns"),
        "deliveries": moved(run.deliveries, "received_ns"),
        "membership": moved(run.membership, "connected_ns"),
        "errors": moved(run.errors, "t_ns"),
        "health": moved(run.health, "t_ns"),
    })  # fmt: skip
    return run.path


LATER = RUN_START + timedelta(minutes=20)


def test_fetch_writes_the_windows_figures_from_moto(
    moto_url: str, metrics: None, aws_run: Path
) -> None:
    written = fetch(aws_run, STACK, endpoint_url=moto_url, now=LATER)
    assert written == aws_run / "server" / "cloudwatch.json"
    document = cw.read_document(written.read_text(), str(written))
    assert (document["region"], document["stack"]) == (REGION, STACK)  # region from the target URL
    assert document["window"]["start"] == "2026-11-30T02:10:00+00:00"
    assert document["window"]["end"] == "2026-11-30T02:11:00+00:00"
    assert document["api_gateway"]["from"] == "target URL"
    assert document["api_gateway"]["metrics"] == {
        "ConnectCount": 5.0, "MessageCount": 110.0, "ExecutionError": 0.0,
        "ClientError": None, "IntegrationError": None,
    }  # fmt: skip
    send = document["functions"][SEND_FUNCTION]
    assert (send["name"], send["memory_mb"]) == ("chat-send", 1024)
    assert (send["Invocations"], send["Errors"], send["Throttles"]) == (50.0, 1.0, 0.0)
    assert send["concurrent_max"] == 4.0
    duration = send["duration_ms"]
    assert (duration["sum"], duration["samples"], duration["max"], duration["mean"]) == (
        100.0, 4.0, 40.0, 25.0,
    )  # fmt: skip
    # moto answers ExtendedStatistics without values: unknown, not zero.
    assert (duration["p50"], duration["p99"]) == (None, None)
    assert set(document["functions"]) == {SEND_FUNCTION, CONNECT_FUNCTION, DISCONNECT_FUNCTION,
                                          DEFAULT_FUNCTION}  # fmt: skip
    assert document["functions"][DISCONNECT_FUNCTION]["Invocations"] is None
    assert document["dynamodb"] == {
        "table": "chat-connections", "ConsumedReadCapacityUnits": 25.0,
        "ConsumedWriteCapacityUnits": 10.0,
    }  # fmt: skip
    assert list(document["emf"]) == ["Variant=optimized"]  # the baseline's are not this run's
    group = document["emf"]["Variant=optimized"]
    assert group["counts"] == {"Recipients": 200.0, "Delivered": 199.0, "Gone": 1.0}
    assert group["durations_ms"]["FanoutMs"]["max"] == 12.0
    assert document["notes"] == []
    assert ACCESS_KEY not in written.read_text()
    assert SECRET_KEY not in written.read_text()


def test_the_report_shows_server_figures_beside_the_clients(
    moto_url: str, metrics: None, aws_run: Path
) -> None:
    fetch(aws_run, STACK, endpoint_url=moto_url, now=LATER)
    index = write_report(aws_run, Prices())
    summary = json.loads((index.parent / "summary.json").read_text())
    server = summary["server"]
    pairs = {row[0]: row[1:] for row in server["pairs"]}
    assert pairs["Chat messages sent / sendmessage invocations"] == ["50", "50"]
    assert pairs["Connections opened / ConnectCount"] == ["5", "5"]
    assert pairs["Frames received / handler Delivered posts"] == ["200", "199"]
    actual = server["cost_from_counts"]
    prices = Prices()
    assert actual["breakdown_usd"]["sendmessage_requests"] == pytest.approx(
        50 * prices.lambda_per_million_requests / 1e6
    )
    assert actual["breakdown_usd"]["sendmessage_compute"] == pytest.approx(
        0.1 * 1.0 * prices.lambda_per_gb_second  # 100 ms at 1024 MB
    )
    assert actual["breakdown_usd"]["api_gateway_messages"] == pytest.approx(110 / 1e6)
    assert actual["breakdown_usd"]["dynamodb_reads"] == pytest.approx(
        25 * prices.dynamodb_per_million_read_request_units / 1e6
    )
    # Five clients connected for the run's 12 s: one connection-minute, from the records.
    assert actual["breakdown_usd"]["api_gateway_connection_minutes"] == pytest.approx(
        prices.api_gateway_per_million_connection_minutes / 1e6
    )
    assert actual["run_total_usd"] == pytest.approx(sum(actual["breakdown_usd"].values()))
    assert pairs["Fan-out p50 / p99 ms (send→receipt / handler FanoutMs)"][0] == "10.0 / 10.0"
    markdown = (index.parent / "report.md").read_text()
    assert f"## Server side (CloudWatch: stack {STACK}, {REGION})" in markdown
    assert "| Chat messages sent / sendmessage invocations | 50 | 50 |" in markdown
    assert "Server side (CloudWatch" in index.read_text()


def test_a_fetch_right_after_the_run_says_figures_may_be_missing(
    moto_url: str, metrics: None, aws_run: Path
) -> None:
    soon = RUN_START + timedelta(minutes=1, seconds=25)
    document = json.loads(fetch(aws_run, STACK, endpoint_url=moto_url, now=soon).read_text())
    (note,) = document["notes"]
    assert note.startswith("fetched 30 s after the window closed")


def test_the_cli_fetches_and_reports_mistakes_in_one_line(
    moto_url: str, metrics: None, aws_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["fetch-metrics", str(aws_run), "--stack", STACK, "--region", REGION,
                 "--endpoint-url", moto_url])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines()[0] == f"cloudwatch: {aws_run / 'server' / 'cloudwatch.json'}"
    assert main(["fetch-metrics", str(aws_run), "--stack", "nope", "--endpoint-url", moto_url]) == 1
    error = capsys.readouterr().err
    assert error.startswith("fanbench: error: fetching CloudWatch figures for stack nope: ")
    assert "does not exist" in error
    assert len(error.strip().splitlines()) == 1
    assert main(["fetch-metrics", str(aws_run.parent / "nowhere"), "--stack", STACK]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_no_region_anywhere_is_a_clear_error(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = build_run(tmp_path / "local-run", clients=3, messages_per_sender=2)
    assert main(["fetch-metrics", str(run_dir), "--stack", STACK, "--endpoint-url", moto_url]) == 1
    assert capsys.readouterr().err == (
        "fanbench: error: no AWS region: pass "
        "--region (or set AWS_REGION, or run against an execute-api URL)\n"
    )
    assert not (run_dir / "server").exists()
