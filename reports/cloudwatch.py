"""Server-side metrics of a run on AWS: what to ask CloudWatch, and the document it makes (pure).

``fanbench fetch-metrics`` (``reports/cloudwatch_fetch.py``, the boto3 shell)
asks for, over the run's window:

* API Gateway (``AWS/ApiGateway`` by ``ApiId`` and ``Stage``): ConnectCount,
  MessageCount, ClientError, ExecutionError, IntegrationError (sums);
* per Lambda function of the stack (``AWS/Lambda`` by ``FunctionName``):
  Invocations, Errors, Throttles (sums), Duration (sum, count, maximum, and p50
  and p99 as ExtendedStatistics) and ConcurrentExecutions (maximum), plus the
  account's ConcurrentExecutions;
* the connections table (``AWS/DynamoDB`` by ``TableName``): consumed read and
  write units (on-demand: the request units billed);
* the handlers' own EMF metrics (namespace ``fanbench``, as listed by
  ListMetrics): counts as sums, ``...Ms`` durations as sum, count, maximum, p50, p99.

The window is the run's, widened to whole periods: CloudWatch keeps one-minute
data for 15 days, five-minute data for 63 days and hourly data after that, and
its counters include any other traffic to the same API and functions in those
minutes. One period spans the whole window, so each figure is one datapoint and
each percentile is over the whole window (percentiles of minutes cannot be merged).

Written as ``RUN_DIR/server/cloudwatch.json`` (``SCHEMA_VERSION``). A figure with
no datapoint is ``null``: unknown, not zero.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fanbench_common.errors import FanbenchError

SCHEMA_VERSION = 1
RELATIVE_PATH = "server/cloudwatch.json"
EMF_NAMESPACE = "fanbench"
"""handlers/emf.py's NAMESPACE (tests/reports/test_cloudwatch.py holds them equal)."""
EMF_DURATION_SUFFIX = "Ms"
"""The handlers name their millisecond figures ``...Ms`` (ScanMs, FanoutMs)."""
PERCENTILES = ("p50", "p99")
PUBLISHING_DELAY_S = 180
"""CloudWatch may take this long to show a minute's data: fetch after it for whole figures."""

API_METRICS = ("ConnectCount", "MessageCount", "ClientError", "ExecutionError", "IntegrationError")
LAMBDA_SUMS = ("Invocations", "Errors", "Throttles")
TABLE_METRICS = ("ConsumedReadCapacityUnits", "ConsumedWriteCapacityUnits")
LAMBDA_TYPE = "AWS::Lambda::Function"
API_TYPE = "AWS::ApiGatewayV2::Api"
STAGE_TYPE = "AWS::ApiGatewayV2::Stage"
TABLE_TYPE = "AWS::DynamoDB::Table"
MAX_QUERIES_PER_REQUEST = 500
"""GetMetricData's limit on queries per call."""

# CloudWatch's retention tiers: (age up to which a resolution is kept, that resolution).
RESOLUTIONS_S = ((timedelta(days=15), 60), (timedelta(days=63), 300), (None, 3600))

_EXECUTE_API = re.compile(
    r"^(?P<api>[a-z0-9]+)\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$"
)


Dimensions = tuple[tuple[str, str], ...]


class MetricsError(FanbenchError):
    """Server-side metrics cannot be fetched or read; the message says why."""


# ------------------------------------------------------------------------ what to fetch


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def period_s(self) -> int:
        return int((self.end - self.start).total_seconds())


def metric_window(start_ns: int, end_ns: int, now: datetime) -> Window:
    """The run's [start, end] widened to whole periods of the resolution CloudWatch still keeps."""
    start = datetime.fromtimestamp(start_ns / 1e9, UTC)
    end = datetime.fromtimestamp(max(end_ns, start_ns) / 1e9, UTC)
    age = now - start
    step = next(s for limit, s in RESOLUTIONS_S if limit is None or age <= limit)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    low = math.floor((start - epoch).total_seconds() / step) * step
    high = max(low + step, math.ceil((end - epoch).total_seconds() / step) * step)
    return Window(epoch + timedelta(seconds=low), epoch + timedelta(seconds=high))


@dataclass(frozen=True)
class StackParts:
    """What the stack's resources name: functions by logical ID, the API, its stage, the table."""

    functions: dict[str, str]
    api_id: str | None = None
    stage: str | None = None
    table: str | None = None


def stack_parts(resources: Iterable[Mapping[str, Any]]) -> StackParts:
    """From ``list_stack_resources`` summaries (or ``describe_stack_resources`` rows)."""
    functions: dict[str, str] = {}
    found: dict[str, str] = {}
    for resource in resources:
        kind, physical = resource.get("ResourceType"), resource.get("PhysicalResourceId")
        if not physical:
            continue
        if kind == LAMBDA_TYPE:
            functions[str(resource["LogicalResourceId"])] = str(physical)
        elif kind in (API_TYPE, STAGE_TYPE, TABLE_TYPE) and kind not in found:
            found[kind] = str(physical)
    return StackParts(
        dict(sorted(functions.items())), found.get(API_TYPE), found.get(STAGE_TYPE),
        found.get(TABLE_TYPE),
    )  # fmt: skip


def target_api(url: str) -> tuple[str, str, str] | None:
    """(api id, region, stage) of an ``wss://{api}.execute-api.{region}.amazonaws.com/{stage}``."""
    parts = urlsplit(url)
    match = _EXECUTE_API.match(parts.hostname or "")
    stage = parts.path.strip("/").split("/")[0]
    if not match or not stage:
        return None
    return match["api"], match["region"], stage


@dataclass(frozen=True)
class Wanted:
    """One figure: where it goes in the document, the metric, and the statistic."""

    path: tuple[str, ...]
    namespace: str
    name: str
    dimensions: Dimensions
    stat: str

    def metric(self) -> dict[str, Any]:
        return {
            "Namespace": self.namespace,
            "MetricName": self.name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions],
        }


@dataclass(frozen=True)
class Plan:
    figures: list[Wanted] = field(default_factory=list)
    """Fetched with GetMetricData."""
    percentiles: list[Wanted] = field(default_factory=list)
    """Fetched with GetMetricStatistics' ExtendedStatistics (``stat`` unused)."""
    labels: list[tuple[tuple[str, ...], Any]] = field(default_factory=list)
    """Fixed values the document carries beside the figures (an EMF group's dimensions)."""


def _duration(
    path: tuple[str, ...], namespace: str, name: str, dims: tuple[tuple[str, str], ...]
) -> list[Wanted]:
    return [
        Wanted((*path, stat), namespace, name, dims, stat)
        for stat in ("Sum", "SampleCount", "Maximum")
    ]


def emf_metrics(listed: Iterable[Mapping[str, Any]], variant: str) -> list[tuple[str, Dimensions]]:
    """The handlers' EMF metrics worth fetching: (name, dimensions) from ListMetrics, those of
    this run's variant when the dimensions name one."""
    chosen = set()
    for metric in listed:
        dims = tuple(sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
        named = dict(dims).get("Variant")
        if variant and named is not None and named != variant:
            continue
        chosen.add((str(metric["MetricName"]), dims))
    return sorted(chosen)


def plan(
    parts: StackParts,
    api: tuple[str, str] | None,
    emf: Sequence[tuple[str, Dimensions]],
) -> Plan:
    """Every figure to fetch: ``api`` is (api id, stage); ``emf`` from ``emf_metrics``."""
    figures: list[Wanted] = []
    percentiles: list[Wanted] = []
    labels: list[tuple[tuple[str, ...], Any]] = []
    dims: Dimensions
    if api is not None:
        dims = (("ApiId", api[0]), ("Stage", api[1]))
        figures += [
            Wanted(("api_gateway", "metrics", m), "AWS/ApiGateway", m, dims, "Sum")
            for m in API_METRICS
        ]
    for logical, name in parts.functions.items():
        dims = (("FunctionName", name),)
        base = ("functions", logical)
        figures += [Wanted((*base, m), "AWS/Lambda", m, dims, "Sum") for m in LAMBDA_SUMS]
        figures += _duration((*base, "duration_ms"), "AWS/Lambda", "Duration", dims)
        figures.append(
            Wanted((*base, "concurrent_max"), "AWS/Lambda", "ConcurrentExecutions", dims, "Maximum")
        )
        percentiles.append(Wanted((*base, "duration_ms"), "AWS/Lambda", "Duration", dims, ""))
    figures.append(
        Wanted(("account", "concurrent_max"), "AWS/Lambda", "ConcurrentExecutions", (), "Maximum")
    )
    if parts.table is not None:
        dims = (("TableName", parts.table),)
        figures += [Wanted(("dynamodb", m), "AWS/DynamoDB", m, dims, "Sum") for m in TABLE_METRICS]
    for name, dims in emf:
        key = "|".join(f"{k}={v}" for k, v in dims) or "-"
        labels.append((("emf", key, "dimensions"), dict(dims)))
        if name.endswith(EMF_DURATION_SUFFIX):
            figures += _duration(("emf", key, "durations_ms", name), EMF_NAMESPACE, name, dims)
            percentiles.append(
                Wanted(("emf", key, "durations_ms", name), EMF_NAMESPACE, name, dims, "")
            )
        else:
            figures.append(Wanted(("emf", key, "counts", name), EMF_NAMESPACE, name, dims, "Sum"))
    return Plan(figures, percentiles, labels)


def metric_data_requests(wanted: Sequence[Wanted], window: Window) -> list[dict[str, Any]]:
    """GetMetricData keyword arguments, up to 500 queries each; query ``q{i}`` is ``wanted[i]``."""
    queries = [
        {
            "Id": f"q{i}",
            "MetricStat": {"Metric": w.metric(), "Period": window.period_s, "Stat": w.stat},
            "ReturnData": True,
        }
        for i, w in enumerate(wanted)
    ]
    return [
        {"MetricDataQueries": queries[i : i + MAX_QUERIES_PER_REQUEST], "StartTime": window.start,
         "EndTime": window.end, "ScanBy": "TimestampAscending"}
        for i in range(0, len(queries), MAX_QUERIES_PER_REQUEST)
    ]  # fmt: skip


def statistics_request(wanted: Wanted, window: Window) -> dict[str, Any]:
    """GetMetricStatistics keyword arguments for one metric's percentiles over the window."""
    return {
        **wanted.metric(),
        "StartTime": window.start,
        "EndTime": window.end,
        "Period": window.period_s,
        "ExtendedStatistics": list(PERCENTILES),
    }


# ------------------------------------------------------------------ what came back


def values_by_query(responses: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Every GetMetricData page's values, by query id."""
    values: dict[str, list[float]] = {}
    for response in responses:
        for result in response.get("MetricDataResults", []):
            values.setdefault(str(result["Id"]), []).extend(
                float(v) for v in result.get("Values", [])
            )
    return values


def combine(stat: str, values: Sequence[float]) -> float | None:
    """One figure from a query's datapoints (one per period; ``None`` when there were none)."""
    if not values:
        return None
    return max(values) if stat == "Maximum" else float(sum(values))


def percentile_values(datapoints: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """p50/p99 from GetMetricStatistics datapoints; several periods are not merged (``None``)."""
    if len(datapoints) != 1:
        return dict.fromkeys(PERCENTILES)
    extended = datapoints[0].get("ExtendedStatistics") or {}
    return {p: (float(extended[p]) if p in extended else None) for p in PERCENTILES}


def _put(document: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = document
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _finish_duration(figures: dict[str, Any]) -> None:
    """``{Sum, SampleCount, Maximum, p50, p99}`` → ``{sum, samples, mean, max, p50, p99}``."""
    total, samples = figures.pop("Sum", None), figures.pop("SampleCount", None)
    figures["sum"], figures["samples"] = total, samples
    figures["max"] = figures.pop("Maximum", None)
    figures["mean"] = total / samples if total is not None and samples else None


def document(
    the_plan: Plan,
    values: Mapping[str, Sequence[float]],
    percentiles: Sequence[Mapping[str, float | None]],
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """``server/cloudwatch.json``: ``context`` (window, region, stack, names) plus every figure."""
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "source": "cloudwatch", **copy.deepcopy(dict(context)),
    }  # fmt: skip
    for path, value in the_plan.labels:
        _put(result, path, value)
    for i, wanted in enumerate(the_plan.figures):
        _put(result, wanted.path, combine(wanted.stat, values.get(f"q{i}", [])))
    for wanted, found in zip(the_plan.percentiles, percentiles, strict=True):
        for p, value in found.items():
            _put(result, (*wanted.path, p), value)
    for function in result.get("functions", {}).values():
        _finish_duration(function["duration_ms"])
    for group in result.get("emf", {}).values():
        for figures in group.get("durations_ms", {}).values():
            _finish_duration(figures)
    return result


def read_document(text: str, where: str) -> dict[str, Any]:
    """A ``cloudwatch.json`` written by this version, or ``MetricsError`` saying what is wrong."""
    try:
        loaded = json.loads(text)
    except ValueError as error:
        raise MetricsError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(loaded, dict) or loaded.get("schema_version") != SCHEMA_VERSION:
        found = loaded.get("schema_version") if isinstance(loaded, dict) else None
        raise MetricsError(
            f"{where}: schema version {found} (this fanbench reads {SCHEMA_VERSION})"
        )
    return loaded
