"""Comparison of runs against a reference: ``fanbench compare``.

Each other run (or side of repeated runs, ``--vs``) gets the ratio of its p50
and p99 fan-out latency to the reference's and the difference of loss rates,
each with a 95 % interval, written as sentences a reader can quote. One run a
side: a cluster bootstrap over messages, which sees only variation within runs.
Several runs a side: each run is one observation (Welch's t on log per-run
percentiles), so run-to-run variation is in the verdict. Runs must share a
scenario (users, rooms, sizes, rates, windows), or the comparison would measure
the scenario rather than the variant; ``force`` overrides that check.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reports.analysis import RunFacts, analyze, gather, lost_per_message_of, per_message, per_second
from reports.rundir import read_run
from reports.stats import (
    ClusteredSample,
    between_runs_ratio,
    bootstrap_difference,
    bootstrap_ratio,
    welch_interval,
)

COMPARISON_VERSION = 1
IGNORED_SCENARIO_KEYS = frozenset({"run_dir", "variant", "token"})
"""Scenario keys that label a run rather than shape its load."""
MINUS = "\N{MINUS SIGN}"
_MISSING = "<missing>"


ONE_RUN_A_SIDE = (
    "one run a side: the intervals cover message-to-message variation within these runs, "
    "not run-to-run variation, which can be larger; for a verdict compare several runs a "
    "side (fanbench compare A1 A2 A3 --vs B1 B2 B3, or fanbench trials)"
)


class ScenarioMismatch(ValueError):
    """The runs were made under different scenarios, so their figures are not comparable."""


@dataclass(frozen=True)
class Measured:
    """What the comparison needs of one run."""

    label: str
    path: Path
    summary: dict[str, Any]
    facts: RunFacts

    def latency_sample(self) -> ClusteredSample:
        """Measured latencies clustered by message, for the cluster bootstrap."""
        lat = self.facts.latencies
        return ClusteredSample(lat.from_sent_ms, lat.message)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95 % interval (NaN when not computable)."""

    point: float
    low: float
    high: float

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.point, self.low, self.high))

    def as_dict(self) -> dict[str, Any]:
        point, low, high = (
            x if math.isfinite(x) else None for x in (self.point, self.low, self.high)
        )
        return {"point": point, "ci95": [low, high]}


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


def _factor(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _signed(x: float, places: int = 2) -> str:
    text = f"{abs(x):.{places}f}"
    return text if float(text) == 0 else (MINUS if x < 0 else "+") + text


def _percent(rate: float) -> str:
    shown = rate * 100
    return f"{shown:.2g} %" if 0 < shown < 0.005 else f"{shown:.2f} %"


def _comparable(ratio: Interval) -> bool:
    return ratio.finite and min(ratio.point, ratio.low) > 0


def ratio_words(ratio: Interval) -> tuple[str, str]:
    """("7.9× lower", "7.1–8.8×") — the factor put the way round that is above 1."""
    if ratio.point < 1 and ratio.high < 1:
        return (f"{_factor(1 / ratio.point)}× lower",
                f"{_factor(1 / ratio.high)}–{_factor(1 / ratio.low)}×")  # fmt: skip
    if ratio.point > 1 and ratio.low > 1:
        return f"{_factor(ratio.point)}× higher", f"{_factor(ratio.low)}–{_factor(ratio.high)}×"
    # The interval holds 1: say the plain ratio rather than a direction the data do not show.
    return f"{_factor(ratio.point)}×", f"{_factor(ratio.low)}–{_factor(ratio.high)}×"


def ratio_sentence(
    label: str, reference: str, figure: str, ratio: Interval, basis: str = ""
) -> str:
    """E.g. "optimized p99 latency is 7.90× lower than baseline (95 % CI 7.10–8.80×)".

    ``basis`` (e.g. "3 vs 3 runs, between-run") follows the interval when given.
    """
    subject = f"{label} {figure} latency"
    if not _comparable(ratio):
        return f"{subject}: no comparison with {reference} (too few measured deliveries)"
    factor, interval = ratio_words(ratio)
    interval += f"; {basis}" if basis else ""
    if factor.endswith(("lower", "higher")):
        return f"{subject} is {factor} than {reference} (95 % CI {interval})"
    unclear = ": no clear difference" if ratio.low <= 1 <= ratio.high else ""
    return f"{subject} is {factor} that of {reference} (95 % CI {interval}){unclear}"


def loss_sentence(
    label: str, reference: str, rates: tuple[float, float], diff: Interval, basis: str = ""
) -> str:
    """E.g. "loss rate: optimized 0.00 % vs baseline 2.01 % (difference −2.01 points, …)"."""
    if not diff.finite:
        return f"loss rate: no comparison of {label} with {reference} (no expected deliveries)"
    points = Interval(diff.point * 100, diff.low * 100, diff.high * 100)
    return (
        f"loss rate: {label} {_percent(rates[0])} vs {reference} {_percent(rates[1])} "
        f"(difference {_signed(points.point)} points, "
        f"95 % CI {_signed(points.low)} to {_signed(points.high)}{'; ' + basis if basis else ''})"
    )


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, or several runs of one configuration (trials)."""

    label: str
    runs: Sequence[Measured]

    def latency_sample(self) -> ClusteredSample:
        """Every run's measured latencies, clustered by (run, message)."""
        lats = [m.facts.latencies for m in self.runs]
        offsets = np.cumsum([0] + [int(m.facts.run.sends["client"].size) for m in self.runs])
        return ClusteredSample(
            np.concatenate([lat.from_sent_ms for lat in lats]),
            np.concatenate(
                [lat.message + offset for lat, offset in zip(lats, offsets, strict=False)]
            ),
        )

    def losses(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(lost, expected) per message, over every run of the side."""
        ledgers = [m.facts.ledger for m in self.runs]
        return (np.concatenate([lost_per_message_of(facts) for facts in ledgers]),
                np.concatenate([facts.expected_per_message for facts in ledgers]))  # fmt: skip

    def per_run(self, key: str) -> list[float]:
        """A latency percentile of each run (NaN where a run measured nothing)."""
        values = [m.summary["latency_ms"]["from_sent"][key] for m in self.runs]
        return [math.nan if v is None else float(v) for v in values]

    def loss_rates(self) -> list[float]:
        return [float(m.summary["counts"]["loss_rate"]) for m in self.runs]


def side_labels(sides: Sequence[Sequence[Measured]]) -> list[str]:
    """A side is named by its runs' variant when they share one, else by its letter."""
    labels = []
    for index, runs in enumerate(sides):
        variants = {str(m.summary.get("variant") or "") for m in runs}
        (only,) = variants if len(variants) == 1 else ("",)
        labels.append(only or chr(ord("A") + index))
    if len(set(labels)) < len(labels):  # e.g. optimized against optimized: an A/A test
        labels = [f"{label} ({chr(ord('A') + i)})" for i, label in enumerate(labels)]
    return labels


def _ratio(a: ClusteredSample, b: ClusteredSample, percentile: float) -> Interval:
    if not len(a) or not len(b):
        return Interval(math.nan, math.nan, math.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return Interval(*bootstrap_ratio(a, b, percentile))


def _within_runs(side: Side, reference: Side) -> tuple[Interval, Interval, Interval]:
    """Cluster bootstrap over the messages of the pooled runs: blind to run-to-run variation."""
    ours, theirs = side.latency_sample(), reference.latency_sample()
    diff = Interval(*bootstrap_difference(*side.losses(), *reference.losses()))
    return _ratio(ours, theirs, 50.0), _ratio(ours, theirs, 99.0), diff


def _between_runs(side: Side, reference: Side) -> tuple[Interval, Interval, Interval]:
    """Each run one observation (Welch's t), so run-to-run variation is in the interval.

    Loss rates are often 0 in every run, where runs show no spread at all; the
    loss interval is then the wider of this and the pooled message-level one.
    """
    p50, p99 = (
        Interval(*between_runs_ratio(side.per_run(key), reference.per_run(key)))
        for key in ("p50", "p99")
    )
    runs = Interval(*welch_interval(side.loss_rates(), reference.loss_rates()))
    pooled = Interval(*bootstrap_difference(*side.losses(), *reference.losses()))
    if runs.finite and pooled.finite:
        pooled = Interval(pooled.point, min(runs.low, pooled.low), max(runs.high, pooled.high))
    return p50, p99, pooled


def _pooled_rate(side: Side) -> float:
    lost, expected = side.losses()
    total = int(expected.sum())
    return int(lost.sum()) / total if total else 0.0


def compare(sides: Sequence[Side]) -> list[dict[str, Any]]:
    """Each side after the first against the first: ratios, differences and their sentences.

    With two runs or more on both sides, intervals come from the runs' spread
    (``_between_runs``); otherwise from resampling messages (``_within_runs``),
    which cannot tell a real difference from one run simply differing from another.
    """
    reference = sides[0]
    deltas: list[dict[str, Any]] = []
    for side in sides[1:]:
        between = len(side.runs) >= 2 and len(reference.runs) >= 2
        p50, p99, diff = (_between_runs if between else _within_runs)(side, reference)
        runs = (len(side.runs), len(reference.runs))
        basis = f"{runs[0]} vs {runs[1]} runs, between-run" if between else ""
        rates = (_pooled_rate(side), _pooled_rate(reference))
        deltas.append({
            "label": side.label,
            "reference": reference.label,
            "runs": list(runs),
            "between_runs": between,
            "p50_ratio": p50.as_dict(),
            "p99_ratio": p99.as_dict(),
            "loss_rate_difference": diff.as_dict(),
            "sentences": [
                ratio_sentence(side.label, reference.label, "p50", p50, basis),
                ratio_sentence(side.label, reference.label, "p99", p99, basis),
                loss_sentence(side.label, reference.label, rates, diff, basis),
            ],
        })  # fmt: skip
    return deltas


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _interval(data: Mapping[str, Any]) -> Interval:
    point, (low, high) = data["point"], data["ci95"]
    return Interval(*(math.nan if x is None else float(x) for x in (point, low, high)))


def _ratio_cell(data: Mapping[str, Any]) -> str:
    ratio = _interval(data)
    if not _comparable(ratio):
        return "–"
    factor, interval = ratio_words(ratio)
    return f"{factor} ({interval})"


def _points_cell(data: Mapping[str, Any]) -> str:
    diff = _interval(data)
    if not diff.finite:
        return "–"
    return f"{_signed(diff.point * 100)} ({_signed(diff.low * 100)} to {_signed(diff.high * 100)})"


def tables(document: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The comparison's tables as (title, header, rows) of text, for Markdown and HTML alike."""
    runs_rows = []
    for run in document["runs"]:
        s = run["summary"]
        lat, counts = s["latency_ms"]["from_sent"], s["counts"]
        runs_rows.append([
            run["label"], _ms(lat["p50"]), _ms(lat["p99"]), _ms(lat["p99.9"]),
            _percent(counts["loss_rate"]), f"{counts['lost']} / {counts['expected']}",
            str(counts["duplicates"]), str(counts["error_frames"]),
            str(s["latency_ms"]["deliveries_measured"]), f"{s['throughput']['sends_per_s']:.1f}",
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
    if not all(delta["between_runs"] for delta in document["deltas"]):
        notes.append(ONE_RUN_A_SIDE)
    for run in document["runs"]:
        notes += [f"{run['label']}: {problem}" for problem in run["summary"]["validity"]]
    return notes


def render_markdown(document: Mapping[str, Any]) -> str:
    lines = ["# fanbench comparison", "", f"Reference: **{document['reference']}**. {_ABOUT}",
             "", "## Findings", ""]  # fmt: skip
    lines += [f"- {sentence}" for d in document["deltas"] for sentence in d["sentences"]]
    notes = _notes(document)
    if notes:
        lines += ["", "## Caution", "", *[f"- {note}" for note in notes]]
    for title, header, rows in tables(document):
        lines += [
            "",
            f"## {title}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    for chart in document["charts"]:
        lines += ["", f"## {chart['title']}", "", f"![{chart['title']}]({chart['png']}) "
                  f"([SVG]({chart['svg']}))  ", chart["caption"]]  # fmt: skip
    lines += ["", "Runs:", "", *[f"- {run['label']}: `{run['path']}`" for run in document["runs"]]]
    return "\n".join(lines) + "\n"


_ABOUT = (
    "Latency is fan-out latency from the actual send. Intervals are 95 %: with several runs "
    "a side, from the spread between runs; with one, from resampling messages with all "
    "their deliveries."
)
_STYLE = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
td:first-child,th:first-child{text-align:left}
.caution{background:#fff4d6;padding:.5rem 1rem}
img{max-width:100%;height:auto}
"""


def render_html(document: Mapping[str, Any], chart_dir: Path) -> str:
    """A self-contained page: inline style, the PNG charts in ``chart_dir`` embedded as base64."""
    e = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>fanbench comparison</title><style>{_STYLE}</style></head><body>",
             "<h1>fanbench comparison</h1>",
             f"<p>Reference: <strong>{e(document['reference'])}</strong>. {e(_ABOUT)}</p>",
             "<h2>Findings</h2><ul>"]  # fmt: skip
    parts += [f"<li>{e(s)}</li>" for d in document["deltas"] for s in d["sentences"]]
    parts.append("</ul>")
    notes = _notes(document)
    if notes:
        parts.append("<div class='caution'><h2>Caution</h2><ul>")
        parts += [f"<li>{e(note)}</li>" for note in notes]
        parts.append("</ul></div>")
    for title, header, rows in tables(document):
        parts.append(
            f"<h2>{e(title)}</h2><table><tr>{''.join(f'<th>{e(h)}</th>' for h in header)}</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in rows]
        parts.append("</table>")
    for chart in document["charts"]:
        data = base64.b64encode((chart_dir / chart["png"]).read_bytes()).decode("ascii")
        title = e(chart["title"])
        parts.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{data}'>"
                     f"<p>{e(chart['caption'])}</p>")  # fmt: skip
    parts.append("<h2>Runs</h2><ul>")
    parts += [
        f"<li>{e(run['label'])}: <code>{e(run['path'])}</code></li>" for run in document["runs"]
    ]
    parts.append("</ul></body></html>\n")
    return "\n".join(parts)


# --- the shell: read runs, write files ------------------------------------------------------

CHARTS = {
    "latency_distribution": ("Fan-out latency", "Every measured delivery by percentile."),
    "latency_over_time": ("Latency over time", "p50 (solid) and p99 (dashed) of each second."),
    "fanout_completion": ("Fan-out completion", "Per message, when its last recipient had it."),
    "loss_errors": ("Loss and errors", "Lost deliveries by second sent; error records per second."),
}


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
        if summary["scenario"].get("token"):  # never copy a secret into a report
            summary["scenario"] = {**summary["scenario"], "token": "<redacted>"}
        measured.append(Measured(label, run.path, summary, facts))
    return measured


def write_comparison(
    run_dirs: list[Path],
    out_dir: Path | None,
    force: bool,
    draw_charts: bool = True,
    versus: list[Path] | None = None,
) -> Path:
    """Compare runs; write comparison.md, comparison.json and index.html.

    Without ``versus`` each run is compared with the first. With it, ``run_dirs``
    (the reference side) and ``versus`` are two sides of repeated trials, and the
    verdict uses the runs' spread. Returns the path of index.html. Raises
    ``ScenarioMismatch`` (unless ``force``), ``RunDirError`` or ``ValueError`` with a
    one-line message for the user.
    """
    if versus is None and len(run_dirs) < 2:
        raise ValueError(
            "fanbench compare needs at least two run directories (the first is the reference)"
        )
    if versus is not None and (not run_dirs or not versus):
        raise ValueError("fanbench compare A... --vs B... needs at least one run on each side")
    measured = load(run_dirs + (versus or []))
    if versus is None:
        sides = [Side(m.label, [m]) for m in measured]
    else:
        groups = [measured[: len(run_dirs)], measured[len(run_dirs) :]]
        sides = [Side(label, runs) for label, runs in zip(side_labels(groups), groups, strict=True)]
    differences = scenario_differences(
        [m.summary["scenario"] for m in measured], [m.label for m in measured]
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
    reference = measured[0].summary["scenario"]
    document: dict[str, Any] = {
        "comparison_version": COMPARISON_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "reference": sides[0].label,
        "sides": [{"label": side.label, "runs": [m.label for m in side.runs]} for side in sides],
        "runs": [{"label": m.label, "path": str(m.path), "summary": m.summary} for m in measured],
        "scenario": {k: v for k, v in reference.items() if k not in IGNORED_SCENARIO_KEYS},
        "scenario_differences": differences,
        "deltas": compare(sides),
        "charts": _charts(measured, out) if draw_charts else [],
    }
    (out / "comparison.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    (out / "comparison.md").write_text(render_markdown(document))
    index = out / "index.html"
    index.write_text(render_html(document, out), encoding="utf-8")
    return index
