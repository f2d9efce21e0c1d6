"""Write RUN_DIR/report/: index.html, report.md, summary.json and every chart as PNG and SVG.

index.html is self-contained (built with ``reports.page``, as the comparison is).
summary.json is ``analyze(run).to_json()`` plus ``cost`` (and ``server`` when CloudWatch's
figures were fetched), with NaN written as null.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fanbench_common.rundir import read_run
from reports import charts, page, saturation, server_report
from reports.analysis import RunFacts, analyze, gather, per_message, per_second
from reports.cost import estimate
from reports.prices import PRICES_TRANSCRIBED, Prices
from reports.summary import SUMMARY_VERSION, Percentiles, Summary

CHART_FILES = (
    "latency_distribution", "latency_over_time", "fanout_completion", "loss_errors", "throughput",
)  # fmt: skip


def json_ready(value: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays unwrapped, NaN and infinities as None."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class ReportFigures:
    """What a report shows: every headline figure, the cost estimate and, when CloudWatch's
    figures were fetched, the server-side section (the last two JSON-ready)."""

    summary: Summary
    cost: Mapping[str, Any]
    server: Mapping[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """summary.json's content."""
        document: dict[str, Any] = {**self.summary.to_json(), "cost": self.cost}
        if self.server is not None:
            document["server"] = self.server
        return dict(json_ready(document))


def summarize(facts: RunFacts, prices: Prices) -> ReportFigures:
    summary = analyze(facts)
    cost = estimate(facts.run, prices)
    server = server_report.read_section(facts.run, summary, cost, prices)
    return ReportFigures(summary, json_ready(cost), None if server is None else json_ready(server))


def _described(summary: Summary) -> str:
    """'optimized, 20 users, ...': the run's variant and scenario in a few words."""
    return charts.describe({"variant": summary.variant, "scenario": summary.scenario})


def figures(facts: RunFacts) -> dict[str, tuple[Figure, str]]:
    """Each chart of one run, with its caption."""
    run, lat = facts.run, facts.latencies
    seconds, messages = per_second(facts), per_message(facts)
    label = str(run.meta.get("variant") or "run")
    warmup = float(run.scenario.get("warmup_s", 0.0))

    def titled(what: str) -> str:
        return charts.title(what, run.meta)

    return {
        "latency_distribution": (
            charts.latency_distribution([(label, lat)], titled("Fan-out latency")),
            "Latency of every measured delivery by percentile. Dashed: measured from the intended "
            "send time, which includes any lag of the open-loop scheduler.",
        ),
        "latency_over_time": (
            charts.percentiles_over_time([(label, seconds)], titled("Latency over time"), warmup),
            "p50 and p99 of the receipts in each second; warm-up sends are left out of these.",
        ),
        "fanout_completion": (
            charts.fanout_completion([(label, messages)], titled("Fan-out completion")),
            "Per message, when its last recipient had it, against how many recipients it had.",
        ),
        "loss_errors": (
            charts.loss_and_errors([(label, seconds)], titled("Loss and errors")),
            "Expected deliveries that never arrived (by the second the message was sent) and "
            "error records (error frames, failed connects and sends).",
        ),
        "throughput": (
            charts.throughput([(label, seconds)], titled("Throughput")),
            "Chat messages sent, and frames received by all clients, per second.",
        ),
    }


def _pct(value: float) -> str:
    return page.percent(value, places=3)


_ms, _usd = page.ms, page.usd


def headline(summary: Summary, cost: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The figures a reader wants first, as (label, value) rows."""
    counts, loss, rate = summary.counts, summary.rates.loss, summary.throughput
    sent, intended = summary.latency_ms.from_sent, summary.latency_ms.from_intended

    def spread(p: Percentiles) -> str:
        return " / ".join(_ms(value) for value in (p.p50, p.p90, p.p99, p.p99_9, p.max))

    ci = f"95 % CI {_pct(loss.ci95[0])}–{_pct(loss.ci95[1])}"
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in summary.errors_by_kind.items()) or "none"
    return [
        ("Messages sent", f"{counts.messages:,}"),
        ("Deliveries (expected pairs received)",
         f"{counts.delivered:,} of {counts.expected:,}"),
        ("Latency from send, p50 / p90 / p99 / p99.9 / max (ms)", spread(sent)),
        ("Latency from intended send, same (ms)", spread(intended)),
        ("Lost", f"{counts.lost:,} ({_pct(loss.rate)}, {ci})"),
        ("Duplicates / out of order / late",
         f"{counts.duplicates:,} / {counts.out_of_order:,} / {counts.late:,}"),
        ("Error records by kind", kinds),
        ("Error frames / negative latencies",
         f"{counts.error_frames:,} / {counts.negative_latency:,}"),
        ("Sends / s, receipts / s", f"{rate.sends_per_s:,.1f}, {rate.deliveries_per_s:,.1f}"),
        ("Cost per million messages sent", _usd(cost["usd_per_million_messages"])),
        ("Cost per hour at this send rate", _usd(cost["usd_per_hour"])),
    ]  # fmt: skip


def cost_rows(cost: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    usage, lines = cost["usage"], cost["breakdown_usd"]
    functions = usage["lambda"]
    send = functions.get("SendMessageFunction", {"requests": 0, "gb_seconds": 0.0})
    other_requests = usage["lambda_requests"] - send["requests"]
    other_gbs = usage["lambda_gb_seconds"] - send["gb_seconds"]
    messages = usage["api_gateway_messages"]
    return [
        ("API Gateway messages",
         f"{messages['total']:,} ({messages['in']:,} in, {messages['out']:,} out)",
         _usd(lines["api_gateway_messages"])),
        ("API Gateway connection-minutes", f"{usage['connection_minutes']:,.2f}",
         _usd(lines["api_gateway_connection_minutes"])),
        ("Lambda sendmessage requests", f"{send['requests']:,}",
         _usd(lines["sendmessage_requests"])),
        ("Lambda sendmessage compute", f"{send['gb_seconds']:,.3f} GB-s",
         _usd(lines["sendmessage_compute"])),
        ("Lambda $connect/$disconnect/$default requests", f"{other_requests:,}",
         _usd(lines["connection_lambda_requests"])),
        ("Lambda $connect/$disconnect/$default compute", f"{other_gbs:,.3f} GB-s",
         _usd(lines["connection_lambda_compute"])),
        ("DynamoDB reads", f"{usage['dynamodb_read_units']:,.1f} RRU",
         _usd(lines["dynamodb_reads"])),
        ("DynamoDB writes", f"{usage['dynamodb_write_units']:,.0f} WRU",
         _usd(lines["dynamodb_writes"])),
        ("Total for this run", "", _usd(cost["run_total_usd"])),
    ]  # fmt: skip


def _banner(problems: Sequence[str]) -> str:
    if not problems:
        return page.banner(True, "Load generator healthy: figures describe the system.")
    return page.banner(
        False,
        "Measurement validity: these latencies may describe the load generator, "
        "not the system under test.",
        problems,
    )


def scenario_table(scenario: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The scenario as (name, value) rows (``analyze`` has redacted its secrets)."""
    rows = []
    for key, value in sorted(scenario.items()):
        rows.append((str(key), value if isinstance(value, str) else json.dumps(value)))
    return rows


def to_html(figures: ReportFigures, images: Mapping[str, tuple[bytes, str, str]]) -> str:
    """The whole page; ``images`` maps chart name to (PNG bytes, title, caption)."""
    e = page.e
    summary, cost = figures.summary, figures.cost
    charts_html = "".join(page.figure(*image) for image in images.values())
    scenario_rows = scenario_table(json_ready(summary.scenario))
    scenario_rows += [("target", str(summary.target)), ("run", str(summary.run))]
    functions = [
        (name, f"{use['requests']:,}", use["requests_from"], f"{use['billed_ms_mean']:,.1f}",
         use["duration_from"], f"{use['memory_mb']}")
        for name, use in cost["usage"]["lambda"].items()
    ]  # fmt: skip
    errors = [(kind, f"{n:,}") for kind, n in summary.errors_by_kind.items()] or [("none", "0")]
    sources = "; ".join(f"{service}: {url}" for service, url in cost["price_sources"].items())
    variant = str(summary.variant or "unlabelled")
    lambda_header = ("Lambda function", "requests", "from", "billed ms (mean)", "duration from",
                     "MB")  # fmt: skip
    body = f"""<h1>fanbench report — {e(variant)}</h1>
<p class="sub">{e(_described(summary))} · target {e(str(summary.target))}</p>
{_banner(summary.validity)}
<p><strong>{e(saturation.describe(summary.saturation))}</strong></p>
<h2>Headline</h2>
{page.table(headline(summary, cost))}
<h2>Charts</h2>
{charts_html}
<h2>Cost estimate ({e(cost["region"])}, list prices)</h2>
{page.table(cost_rows(cost), ("", "usage", "USD"))}
<p>Per million messages sent: <strong>{_usd(cost["usd_per_million_messages"])}</strong> ·
per hour at {cost["send_rate_per_s"]:,.2f} sends/s with {cost["mean_connections"]:,.1f} connections:
<strong>{_usd(cost["usd_per_hour"])}</strong> · per connection session:
{_usd(cost["usd_per_connection_session"])}</p>
{page.table(functions, lambda_header)}
<div class="small">{page.items(cost["assumptions"])}</div>
<p class="small">Prices transcribed {PRICES_TRANSCRIBED} from {e(sources)}.</p>
{server_report.to_html(figures.server)}
<h2>Errors by kind</h2>
{page.table(errors)}
<h2>Scenario</h2>
{page.table(scenario_rows)}
<p class="small">Every figure is in summary.json (summary_version {SUMMARY_VERSION});
charts as PNG and SVG beside this page.</p>"""
    return page.html_page(f"fanbench — {variant}", body)


def to_markdown(figures: ReportFigures, images: Mapping[str, tuple[bytes, str, str]]) -> str:
    table = page.markdown_table
    summary, cost = figures.summary, figures.cost
    lines = [f"# fanbench report — {summary.variant or 'unlabelled'}", "",
             f"{_described(summary)} · target `{summary.target}`", ""]  # fmt: skip
    if summary.validity:
        lines += ["**Measurement validity:** these latencies may describe the load generator:", ""]
        lines += [f"- {problem}" for problem in summary.validity] + [""]
    lines += [f"**{saturation.describe(summary.saturation)}**", ""]
    lines += [*table(headline(summary, cost), ("figure", "value")), "", "## Charts", ""]
    lines += [f"![{title}]({name}.png) ([SVG]({name}.svg))  \n{caption}\n"
              for name, (_, title, caption) in images.items()]  # fmt: skip
    lines += ["## Cost estimate", "", *table(cost_rows(cost), ("item", "usage", "USD"))]
    lines += ["", *[f"- {a}" for a in cost["assumptions"]], ""]
    lines += [*server_report.to_markdown(figures.server), "All figures: `summary.json`.", ""]
    return "\n".join(lines)


def write_report(run_dir: Path, prices: Prices) -> Path:
    """Write RUN_DIR/report/ and return its index.html; RunDirError if the run is unreadable."""
    facts = gather(read_run(run_dir))
    report = summarize(facts, prices)
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    images: dict[str, tuple[bytes, str, str]] = {}
    for name, (figure, caption) in figures(facts).items():
        png, _ = charts.save(figure, out / name)
        images[name] = (png.read_bytes(), figure.get_suptitle(), caption)
    document = report.to_json()
    (out / "summary.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(to_markdown(report, images))
    index = out / "index.html"
    index.write_text(to_html(report, images), encoding="utf-8")
    return index
