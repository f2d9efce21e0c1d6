"""``fanbench fetch-metrics``: CloudWatch's figures for a run's window, into its run directory.

A thin boto3 shell around ``reports.cloudwatch`` (what to ask, and the document
the answers make). It runs after the run, reads only ``run.json`` and writes
only ``server/cloudwatch.json``, like ``fanbench report`` writes ``report/``: the
data still flows run → run directory → reports, and nothing here touches the
load generator.

Credentials come from boto3's usual chain (environment, ``--profile``, SSO,
instance roles); nothing about them is printed or stored. Calls made:
``cloudformation:ListStackResources``, ``lambda:GetFunctionConfiguration``
(memory, for the cost; optional), ``cloudwatch:ListMetrics``,
``cloudwatch:GetMetricData`` and ``cloudwatch:GetMetricStatistics``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from fanbench_common.rundir import read_run
from reports import cloudwatch as cw

RETRIES = Config(retries={"max_attempts": 5, "mode": "standard"})
MAX_PAGES = 1_000
"""A bound on any paginated listing (a stack or a namespace far beyond fanbench's)."""


def _clients(
    region: str | None, profile: str | None, endpoint_url: str | None
) -> tuple[dict[str, Any], str]:
    """CloudFormation, CloudWatch and Lambda clients, and the region they talk to."""
    session = boto3.Session(profile_name=profile, region_name=region)
    where = region or session.region_name
    if not where:
        raise cw.MetricsError(
            "no AWS region: pass --region (or set AWS_REGION, or run against an execute-api URL)"
        )
    clients = {
        name: session.client(name, region_name=where, endpoint_url=endpoint_url, config=RETRIES)
        for name in ("cloudformation", "cloudwatch", "lambda")
    }
    return clients, where


def _pages(client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    for number, page in enumerate(client.get_paginator(operation).paginate(**kwargs)):
        if number >= MAX_PAGES:
            raise cw.MetricsError(f"{operation}: more than {MAX_PAGES} pages")
        yield page


def _memory_mb(lambda_client: Any, name: str) -> int | None:
    try:
        return int(lambda_client.get_function_configuration(FunctionName=name)["MemorySize"])
    except (ClientError, KeyError):
        return None  # no permission, or gone: the cost falls back to template.yaml's memory


def _metric_data(cloudwatch: Any, requests: list[dict[str, Any]]) -> dict[str, list[float]]:
    pages: list[dict[str, Any]] = []
    for request in requests:
        token: str | None = None
        for _ in range(MAX_PAGES):
            page = cloudwatch.get_metric_data(**request, **({"NextToken": token} if token else {}))
            pages.append(page)
            token = page.get("NextToken")
            if not token:
                break
    return cw.values_by_query(pages)


def fetch(
    run_dir: Path,
    stack: str,
    *,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    now: datetime | None = None,
) -> Path:
    """Fetch the run's server-side figures and write ``RUN_DIR/server/cloudwatch.json``."""
    run = read_run(run_dir)
    meta = run.meta
    target = cw.target_api(str(meta.get("target", "")))
    now = now or datetime.now(UTC)
    times = meta["times"]
    end_ns = int(times.get("end_ns") or times.get("stop_sending_ns") or times["start_ns"])
    window = cw.metric_window(int(times["start_ns"]), end_ns, now)
    try:
        clients, region = _clients(region or (target[1] if target else None), profile, endpoint_url)
        resources = [
            summary
            for page in _pages(clients["cloudformation"], "list_stack_resources", StackName=stack)
            for summary in page.get("StackResourceSummaries", [])
        ]
        parts = cw.stack_parts(resources)
        if not parts.functions:
            raise cw.MetricsError(f"stack {stack} has no {cw.LAMBDA_TYPE} resources")
        notes: list[str] = []
        api: tuple[str, str] | None = None
        api_from = None
        if parts.api_id and parts.stage:
            api, api_from = (parts.api_id, parts.stage), "stack"
        elif target:
            api, api_from = (target[0], target[2]), "target URL"
        else:
            notes.append("no API Gateway figures: the stack names no API and stage, and the "
                         "target is not an execute-api URL")  # fmt: skip
        listed = [
            metric
            for page in _pages(clients["cloudwatch"], "list_metrics", Namespace=cw.EMF_NAMESPACE)
            for metric in page.get("Metrics", [])
        ]
        the_plan = cw.plan(parts, api, cw.emf_metrics(listed, str(meta.get("variant") or "")))
        values = _metric_data(
            clients["cloudwatch"], cw.metric_data_requests(the_plan.figures, window)
        )
        percentiles = [
            cw.percentile_values(
                clients["cloudwatch"]
                .get_metric_statistics(**cw.statistics_request(wanted, window))
                .get("Datapoints", [])
            )
            for wanted in the_plan.percentiles
        ]
        functions = {
            logical: {"name": name, "memory_mb": _memory_mb(clients["lambda"], name)}
            for logical, name in parts.functions.items()
        }
    except (ClientError, BotoCoreError) as error:
        raise cw.MetricsError(f"fetching CloudWatch figures for stack {stack}: {error}") from None
    if now < window.end + timedelta(seconds=cw.PUBLISHING_DELAY_S):
        notes.append(
            f"fetched {max(0, int((now - window.end).total_seconds()))} s after the window "
            f"closed: CloudWatch may not have published every figure yet (fetch again "
            f"{cw.PUBLISHING_DELAY_S // 60} minutes after the run)"
        )
    context = {
        "fetched_at": now.isoformat(),
        "region": region,
        "stack": stack,
        "window": {
            "start": window.start.isoformat(), "end": window.end.isoformat(),
            "period_s": window.period_s, "run_start_ns": int(times["start_ns"]),
            "run_end_ns": end_ns,
        },
        "api_gateway": {"api_id": api[0] if api else None, "stage": api[1] if api else None,
                        "from": api_from},
        "functions": functions,
        "dynamodb": {"table": parts.table},
        "notes": notes,
    }  # fmt: skip
    document = cw.document(the_plan, values, percentiles, context)
    return _write(run_dir / cw.RELATIVE_PATH, document)


def _write(target: Path, document: dict[str, Any]) -> Path:
    """Write beside the target and rename: a failed fetch never leaves half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(document, stream, indent=2, sort_keys=True)
            stream.write("\n")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
