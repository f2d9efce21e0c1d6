"""The report's server-side section: CloudWatch's figures beside the clients' own (pure).

Read from ``RUN_DIR/server/cloudwatch.json`` (written by ``fanbench
fetch-metrics``); absent, the report has no such section. Each pair compares
what the load generator saw with what AWS counted for the same window, and the
cost is computed again from the invocations and durations AWS measured.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from fanbench_common.resources import SEND_FUNCTION
from fanbench_common.rundir import Run
from reports import cloudwatch
from reports.cost import cost_from_counts
from reports.prices import Prices
from reports.summary import Summary

Row = tuple[str, str, str]


def _number(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _usd(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"


def _total(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _emf(document: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """The EMF group of the run's variant (or the only one), counts and durations."""
    groups = document.get("emf") or {}
    mine = [g for g in groups.values() if g.get("dimensions", {}).get("Variant") == variant]
    chosen = mine or list(groups.values())
    return chosen[0] if len(chosen) == 1 else {}


def section(
    run: Run,
    summary: Summary,
    client_cost: Mapping[str, Any],
    document: Mapping[str, Any],
    prices: Prices,
) -> dict[str, Any]:
    """The server-side figures, the client/server pairs and the cost from actual counts;
    ``client_cost`` is the estimate from the client's records (``cost.estimate``)."""
    functions: Mapping[str, Any] = document.get("functions") or {}
    api = (document.get("api_gateway") or {}).get("metrics") or {}
    dynamodb = document.get("dynamodb") or {}
    emf = _emf(document, str(run.meta.get("variant") or ""))
    counts, durations = emf.get("counts", {}), emf.get("durations_ms", {})
    actual = cost_from_counts(
        prices,
        api_gateway_messages=api.get("MessageCount"),
        connection_minutes=float(client_cost["usage"]["connection_minutes"]),
        functions={
            logical: {
                "requests": figures.get("Invocations"),
                "duration_ms_sum": (figures.get("duration_ms") or {}).get("sum"),
                "memory_mb": figures.get("memory_mb"),
            }
            for logical, figures in functions.items()
        },
        dynamodb_read_units=dynamodb.get("ConsumedReadCapacityUnits"),
        dynamodb_write_units=dynamodb.get("ConsumedWriteCapacityUnits"),
    )
    send = functions.get(SEND_FUNCTION, {})
    send_duration = send.get("duration_ms") or {}
    fanout = durations.get("FanoutMs") or {}
    latency, c = summary.latency_ms.from_sent, summary.counts
    errors = _total([f.get("Errors") for f in functions.values()])
    api_errors = _total([api.get(m) for m in ("ClientError", "ExecutionError", "IntegrationError")])
    pairs: list[Row] = [
        ("Connections opened / ConnectCount", f"{len(run.membership['client']):,}",
         _number(api.get("ConnectCount"))),
        ("Chat messages sent / sendmessage invocations", f"{c.messages:,}",
         _number(send.get("Invocations"))),
        ("Recipients expected / handler Recipients", f"{c.expected:,}",
         _number(counts.get("Recipients"))),
        ("Frames received / handler Delivered posts", f"{c.receipts:,}",
         _number(counts.get("Delivered"))),
        ("Lost / handler Gone, Undelivered, Unknown, Failed posts", f"{c.lost:,}",
         " / ".join(
             _number(counts.get(k)) for k in ("Gone", "Undelivered", "Unknown", "Failed")
         )),
        ("Error frames / Lambda Errors, API 4xx+5xx", f"{c.error_frames:,}",
         f"{_number(errors)} / {_number(api_errors)}"),
        ("API Gateway messages (estimated / MessageCount)",
         f"{client_cost['usage']['api_gateway_messages']['total']:,}",
         _number(api.get("MessageCount"))),
        ("Fan-out p50 / p99 ms (send→receipt / handler FanoutMs)",
         f"{_number(latency.p50, 1)} / {_number(latency.p99, 1)}",
         f"{_number(fanout.get('p50'), 1)} / {_number(fanout.get('p99'), 1)}"),
        ("sendmessage Duration p50 / p99 ms", "", f"{_number(send_duration.get('p50'), 1)} / "
         f"{_number(send_duration.get('p99'), 1)}"),
        ("Cost of this run (modelled / from AWS's counts)", _usd(client_cost["run_total_usd"]),
         _usd(actual["run_total_usd"])),
    ]  # fmt: skip
    per_function: list[tuple[str, ...]] = []
    for logical, f in functions.items():
        d = f.get("duration_ms") or {}
        per_function.append((
            logical, _number(f.get("Invocations")), _number(f.get("Errors")),
            _number(f.get("Throttles")),
            " / ".join(_number(d.get(k), 1) for k in ("p50", "p99", "max")),
            _number(f.get("concurrent_max")), _number(f.get("memory_mb")),
        ))  # fmt: skip
    notes = list(document.get("notes") or [])
    if actual["unknown"]:
        notes.append("no CloudWatch figure for " + ", ".join(actual["unknown"]) + ": costed at $0")
    notes.append(
        "CloudWatch counts everything the API and functions did in the window "
        f"({document['window']['start']} to {document['window']['end']}), other clients included."
    )
    return {
        "window": document["window"],
        "region": document.get("region"),
        "stack": document.get("stack"),
        "pairs": pairs,
        "functions": per_function,
        "cost_from_counts": actual,
        "notes": notes,
    }


def read_section(
    run: Run, summary: Summary, client_cost: Mapping[str, Any], prices: Prices
) -> dict[str, Any] | None:
    """The section, when the run directory holds fetched metrics."""
    path = run.path / cloudwatch.RELATIVE_PATH
    if not path.is_file():
        return None
    document = cloudwatch.read_document(path.read_text(), str(path))
    return section(run, summary, client_cost, document, prices)


FUNCTION_HEADER = ("function", "invocations", "errors", "throttles", "duration p50 / p99 / max ms",
                   "max concurrency", "MB")  # fmt: skip
PAIR_HEADER = ("figure", "client side", "server side (CloudWatch)")


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr><th>" + html.escape(row[0]) + "</th>"
        + "".join(f'<td class="n">{html.escape(cell)}</td>' for cell in row[1:]) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


def to_html(server: Mapping[str, Any] | None) -> str:
    if not server:
        return ""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in server["notes"])
    where = html.escape(f"stack {server['stack']}, {server['region']}")
    return (
        f"<h2>Server side (CloudWatch: {where})</h2>"
        + _html_table(PAIR_HEADER, server["pairs"])
        + _html_table(FUNCTION_HEADER, server["functions"])
        + f'<ul class="small">{notes}</ul>'
    )


def to_markdown(server: Mapping[str, Any] | None) -> list[str]:
    if not server:
        return []

    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return out + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]

    return [
        f"## Server side (CloudWatch: stack {server['stack']}, {server['region']})", "",
        *table(PAIR_HEADER, server["pairs"]), "", *table(FUNCTION_HEADER, server["functions"]),
        "", *[f"- {note}" for note in server["notes"]], "",
    ]  # fmt: skip
