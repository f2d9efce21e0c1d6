"""Comparison of runs against a reference: ``fanbench compare``.

Each other run (or side of repeated runs, ``--vs``) gets the ratio of its p50
and p99 fan-out latency to the reference's and the difference of loss rates,
each with a 95 % interval, written as sentences a reader can quote (the
arithmetic is ``reports.verdict``; this module reads, checks and writes).
Runs must share a scenario (users, rooms, sizes, rates, windows), or the
comparison would measure the scenario rather than the variant; ``force``
overrides that check.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from fanbench_common.errors import FanbenchError
from fanbench_common.rundir import read_run
from reports import page, saturation
from reports.analysis import analyze, gather, per_message, per_second
from reports.summary import Summary
from reports.verdict import (
    Interval,
    Measured,
    Side,
    comparable,
    compare,
    ratio_words,
    side_labels,
)
from reports.verdict import side_by_side as side_by_side_delta

COMPARISON_VERSION = 1
IGNORED_SCENARIO_KEYS = frozenset({"run_dir", "variant", "token"})
"""Scenario keys that label a run rather than shape its load."""
_MISSING = "<missing>"


ONE_RUN_A_SIDE = (
    "one run a side: the intervals cover message-to-message variation within these runs, "
    "not run-to-run variation, which can be larger; for a verdict compare several runs a "
    "side (fanbench compare A1 A2 A3 --vs B1 B2 B3, or fanbench trials)"
)


SIDE_BY_SIDE = (
    "side by side: pairing by time block cancels the noise both sides share, not a "
    "difference between the two stage instances themselves (one stage's processes "
    "scheduled worse for the whole run, as on an overloaded host); before trusting a small "
    "difference, repeat the run with the sides swapped (--variants B A)"
)


class ScenarioMismatch(FanbenchError, ValueError):
    """The runs were made under different scenarios, so their figures are not comparable."""


# --- pure parts ---------------------------------------------------------------------------


def run_labels(variants: Sequence[str], paths: Sequence[Path]) -> list[str]:
    """Each run's variant, or its directory name where the variant is empty or shared."""
    counts = Counter(variants)
    labels = [
        v if v and counts[v] == 1 else p.name or str(p)
        for v, p in zip(variants, paths, strict=True)
    ]
    clashes, seen = Counter(labels), Counter[str]()
    for i, label in enumerate(labels):  # directory names can clash too (a/run, b/run)
        if clashes[label] > 1:
            seen[label] += 1
            labels[i] = f"{label} #{seen[label]}"
    return labels


def scenario_differences(
    scenarios: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> list[str]:
    """``key: value (reference) vs value (other)`` for every load-shaping key that differs."""
    reference = scenarios[0]
    found: list[str] = []
    for scenario, label in zip(scenarios[1:], labels[1:], strict=True):
        for key in sorted((set(reference) | set(scenario)) - IGNORED_SCENARIO_KEYS):
            ours, theirs = reference.get(key, _MISSING), scenario.get(key, _MISSING)
            if ours != theirs:
                found.append(f"{key} {ours} ({labels[0]}) vs {theirs} ({label})")
    return found


def _interval(data: Mapping[str, Any]) -> Interval:
    point, (low, high) = data["point"], data["ci95"]
    return Interval(*(math.nan if x is None else float(x) for x in (point, low, high)))


def _ratio_cell(data: Mapping[str, Any]) -> str:
    ratio = _interval(data)
    if not comparable(ratio):
        return "–"
    factor, interval = ratio_words(ratio)
    return f"{factor} ({interval})"


def _points_cell(data: Mapping[str, Any]) -> str:
    diff = _interval(data)
    if not diff.finite:
        return "–"
    point, low, high = (page.signed(x * 100) for x in (diff.point, diff.low, diff.high))
    return f"{point} ({low} to {high})"


def tables(document: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The comparison's tables as (title, header, rows) of text, for Markdown and HTML alike."""
    runs_rows = []
    for run in document["runs"]:
        s: Summary = run["summary"]
        lat, counts = s.latency_ms.from_sent, s.counts
        runs_rows.append([
            run["label"], page.ms(lat.p50), page.ms(lat.p99), page.ms(lat.p99_9),
            page.percent(counts.loss_rate), f"{counts.lost} / {counts.expected}",
            str(counts.duplicates), str(counts.error_frames),
            str(s.latency_ms.deliveries_measured), f"{s.throughput.sends_per_s:.1f}",
        ])  # fmt: skip
    delta_rows = [
        [d["label"], _ratio_cell(d["p50_ratio"]), _ratio_cell(d["p99_ratio"]),
         _points_cell(d["loss_rate_difference"])]
        for d in document["deltas"]
    ]  # fmt: skip
    scenario_rows = [
        [key, json.dumps(value)] for key, value in sorted(document["scenario"].items())
    ]
    return [
        ("Runs", ["run", "p50 ms", "p99 ms", "p99.9 ms", "loss rate", "lost / expected",
                  "duplicates", "error frames", "deliveries measured", "sends/s"], runs_rows),
        (f"Against {document['reference']} (95 % intervals)",
         ["run", "p50 latency", "p99 latency", "loss-rate difference, points"], delta_rows),
        (f"Scenario (of {document['reference']})", ["key", "value"], scenario_rows),
    ]  # fmt: skip


def _notes(document: Mapping[str, Any]) -> list[str]:
    notes = [
        f"scenarios differ (compared with --force): {line}"
        for line in document["scenario_differences"]
    ]
    if not all(d["between_runs"] or d.get("side_by_side") for d in document["deltas"]):
        notes.append(ONE_RUN_A_SIDE)
    if any(d.get("side_by_side") for d in document["deltas"]):
        notes.append(SIDE_BY_SIDE)
        # Two saturated stages queue on their own schedules: that is what such a run compares.
        for run in document["runs"]:
            limits = run["summary"].saturation
            if limits.limited_by != saturation.NEITHER:
                notes.append(f"{run['label']}: {saturation.describe(limits)}; a saturated "
                             "side's latency is mostly queueing, not its handler")  # fmt: skip
    for run in document["runs"]:
        notes += [f"{run['label']}: {problem}" for problem in run["summary"].validity]
    return notes


def render_markdown(document: Mapping[str, Any]) -> str:
    lines = ["# fanbench comparison", "", f"Reference: **{document['reference']}**. {_ABOUT}",
             "", "## Findings", ""]  # fmt: skip
    lines += [f"- {sentence}" for d in document["deltas"] for sentence in d["sentences"]]
    notes = _notes(document)
    if notes:
        lines += ["", "## Caution", "", *[f"- {note}" for note in notes]]
    for title, header, rows in tables(document):
        lines += ["", f"## {title}", "", *page.markdown_table(rows, header)]
    for chart in document["charts"]:
        lines += ["", f"## {chart['title']}", "", f"![{chart['title']}]({chart['png']}) "
                  f"([SVG]({chart['svg']}))  ", chart["caption"]]  # fmt: skip
    lines += ["", "Runs:", "", *[f"- {run['label']}: `{run['path']}`" for run in document["runs"]]]
    return "\n".join(lines) + "\n"


_ABOUT = (
    "Latency is fan-out latency from the actual send. Intervals are 95 %: with several runs "
    "a side, from the spread between runs; with one, from resampling messages with all "
    "their deliveries; with two sides run at once (fanbench run --variants), from the sides' "
    "ratios paired by time block."
)


def render_html(document: Mapping[str, Any], chart_dir: Path) -> str:
    """A self-contained page: the PNG charts in ``chart_dir`` embedded as base64."""
    e = page.e
    parts = ["<h1>fanbench comparison</h1>",
             f"<p>Reference: <strong>{e(document['reference'])}</strong>. {e(_ABOUT)}</p>",
             "<h2>Findings</h2>",
             page.items(s for d in document["deltas"] for s in d["sentences"])]  # fmt: skip
    notes = _notes(document)
    if notes:
        parts.append(page.banner(False, "Caution", notes))
    for title, header, rows in tables(document):
        parts += [f"<h2>{e(title)}</h2>", page.table(rows, header)]
    for chart in document["charts"]:
        png = (chart_dir / chart["png"]).read_bytes()
        parts += [
            f"<h2>{e(chart['title'])}</h2>",
            page.figure(png, chart["title"], chart["caption"]),
        ]
    parts += ["<h2>Runs</h2><ul>",
              *[f"<li>{e(run['label'])}: <code>{e(run['path'])}</code></li>"
                for run in document["runs"]],
              "</ul>"]  # fmt: skip
    return page.html_page("fanbench comparison", "\n".join(parts))


# --- the shell: read runs, write files ------------------------------------------------------

CHARTS = {
    "latency_distribution": ("Fan-out latency", "Every measured delivery by percentile."),
    "latency_over_time": ("Latency over time", "p50 (solid) and p99 (dashed) of each second."),
    "fanout_completion": ("Fan-out completion", "Per message, when its last recipient had it."),
    "loss_errors": ("Loss and errors", "Lost deliveries by second sent; error records per second."),
}
BLOCK_CHART = (
    "Ratio by time block",
    "B's p50 and p99 over A's in each block of the side-by-side run: shared noise moves both "
    "sides, so the ratio stays flat where the difference is real.",
)


def _block_chart(deltas: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], out: Path
                 ) -> list[dict[str, str]]:  # fmt: skip
    from reports import charts

    series = [(d["label"], d["blocks"]) for d in deltas if d.get("side_by_side")]
    if not series:
        return []
    title, caption = BLOCK_CHART
    # The sides are named in the legend; both labels in the title as well overflow it.
    heading = charts.title(title, {**meta, "variant": "B / A"})
    png, svg = charts.save(charts.block_ratios(series, heading), out / "blocks")
    return [{"name": "block_ratio", "title": title, "caption": caption,
             "png": png.name, "svg": svg.name}]  # fmt: skip


def _charts(measured: Sequence[Measured], out: Path) -> list[dict[str, str]]:
    """Draw each overlay chart into ``out`` as PNG and SVG; returns their entries."""
    from reports import charts  # matplotlib is only imported when charts are drawn

    seconds = [per_second(m.facts) for m in measured]
    first = measured[0].facts.run
    warmup = float(first.scenario.get("warmup_s", 0.0))
    draw: dict[str, tuple[Callable[..., Any], Sequence[Any]]] = {
        "latency_distribution": (charts.latency_distribution,
                                 [m.facts.latencies.from_sent_ms for m in measured]),
        "latency_over_time": (partial(charts.percentiles_over_time, warmup_s=warmup), seconds),
        "fanout_completion": (charts.fanout_completion, [per_message(m.facts) for m in measured]),
        "loss_errors": (charts.loss_and_errors, seconds),
    }  # fmt: skip
    meta = {**first.meta, "variant": " vs ".join(m.label for m in measured)}
    entries = []
    for name, (chart, data) in draw.items():
        title, caption = CHARTS[name]
        series = [(m.label, d) for m, d in zip(measured, data, strict=True)]
        png, svg = charts.save(chart(series, charts.title(title, meta)), out / name)
        entries.append({"name": name, "title": title, "caption": caption,
                        "png": png.name, "svg": svg.name})  # fmt: skip
    return entries


def default_out_dir() -> Path:
    return Path("runs") / f"compare-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def load(run_dirs: Sequence[Path]) -> list[Measured]:
    """Read and analyse each run directory (``RunDirError`` names any that is unreadable)."""
    runs = [read_run(path) for path in run_dirs]
    labels = run_labels([str(run.meta.get("variant") or "") for run in runs], list(run_dirs))
    measured = []
    for label, run in zip(labels, runs, strict=True):
        facts = gather(run)
        summary = analyze(facts)
        measured.append(Measured(label, run.path, summary, facts))
    return measured


def write_comparison(
    run_dirs: list[Path],
    out_dir: Path | None,
    force: bool,
    draw_charts: bool = True,
    versus: list[Path] | None = None,
    side_by_side: bool = False,
) -> Path:
    """``compare_and_write``'s index.html."""
    index, _ = compare_and_write(run_dirs, out_dir, force, draw_charts, versus, side_by_side)
    return index


def verdict_sentences(document: Mapping[str, Any]) -> list[str]:
    """The comparison's verdicts in words, one sentence a figure (what the CLI prints)."""
    return [sentence for delta in document["deltas"] for sentence in delta["sentences"]]


def comparison_json(document: Mapping[str, Any]) -> str:
    """comparison.json's text: each run's ``Summary`` as its JSON document, anything else
    JSON has no type for as text."""

    def json_value(value: Any) -> Any:
        return value.to_json() if isinstance(value, Summary) else str(value)

    return json.dumps(document, indent=2, default=json_value) + "\n"


def compare_and_write(
    run_dirs: list[Path],
    out_dir: Path | None,
    force: bool,
    draw_charts: bool = True,
    versus: list[Path] | None = None,
    side_by_side: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Compare runs; write comparison.md, comparison.json and index.html.

    Without ``versus`` each run is compared with the first. With it, ``run_dirs``
    (the reference side) and ``versus`` are two sides of repeated trials, and the
    verdict uses the runs' spread. ``side_by_side``: one run a side, made at the same time
    (``fanbench run --variants``), compared block by block. Returns index.html's path and the
    document comparison.json holds (each run's ``summary`` as a ``Summary``). Raises
    ``ScenarioMismatch`` (unless ``force``), ``RunDirError`` or ``ValueError`` with a
    one-line message for the user.
    """
    if versus is None and len(run_dirs) < 2:
        raise ValueError(
            "fanbench compare needs at least two run directories (the first is the reference)"
        )
    if versus is not None and (not run_dirs or not versus):
        raise ValueError("fanbench compare A... --vs B... needs at least one run on each side")
    if side_by_side and (len(run_dirs), len(versus or [])) != (1, 1):
        raise ValueError("a side-by-side comparison takes one run a side")
    measured = load(run_dirs + (versus or []))
    if versus is None:
        sides = [Side(m.label, [m]) for m in measured]
    else:
        groups = [measured[: len(run_dirs)], measured[len(run_dirs) :]]
        sides = [Side(label, runs) for label, runs in zip(side_labels(groups), groups, strict=True)]
    differences = scenario_differences(
        [m.summary.scenario for m in measured], [m.label for m in measured]
    )
    if differences and not force:
        raise ScenarioMismatch(
            "runs were made under different scenarios: " + "; ".join(differences)
            + " (compare like with like, or pass --force)"
        )  # fmt: skip
    out = out_dir or default_out_dir()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    reference = measured[0].summary.scenario
    deltas = [side_by_side_delta(sides[1], sides[0])] if side_by_side else compare(sides)
    document: dict[str, Any] = {
        "comparison_version": COMPARISON_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "reference": sides[0].label,
        "sides": [{"label": side.label, "runs": [m.label for m in side.runs]} for side in sides],
        "runs": [{"label": m.label, "path": str(m.path), "summary": m.summary} for m in measured],
        "scenario": {k: v for k, v in reference.items() if k not in IGNORED_SCENARIO_KEYS},
        "scenario_differences": differences,
        "deltas": deltas,
        "charts": _charts(measured, out) if draw_charts else [],
    }
    if draw_charts:
        meta = {**measured[0].facts.run.meta, "variant": " vs ".join(m.label for m in measured)}
        document["charts"] += _block_chart(deltas, meta, out)
    (out / "comparison.json").write_text(comparison_json(document))
    (out / "comparison.md").write_text(render_markdown(document))
    index = out / "index.html"
    index.write_text(render_html(document, out), encoding="utf-8")
    return index, document
