"""What every benchmark figure carries, and where results go.

Each benchmark returns a ``BenchResult`` (rows of figures, ratios measured side
by side in the same run, the parameters that produced them). ``write_results``
stamps it with the machine and library versions, merges it by benchmark name
into ``bench/results/<YYYY-MM-DD>.json`` and rewrites ``<date>.md`` from the
merged file, so a day's results accumulate one benchmark at a time.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import psutil

SCHEMA = 1
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIZES = ("smoke", "default", "full")
Size = Literal["smoke", "default", "full"]
VERSIONED = (
    "boto3", "botocore", "websockets", "locust", "aiohttp", "moto",
    "urllib3", "gevent", "websocket-client", "numpy", "psutil",
)  # fmt: skip

Scalar = int | float | str | bool | None


@dataclass(frozen=True)
class Ratio:
    """A ratio of two figures measured side by side in one run, and its target if any."""

    name: str
    value: float
    target: float | None = None
    """The ratio should be at least this."""
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return math.isfinite(self.value) and self.value >= self.target


@dataclass
class BenchResult:
    name: str
    size: str
    parameters: dict[str, Any]
    rows: list[dict[str, Scalar]] = field(default_factory=list)
    """One dict per table row: the figures, each under its column name."""
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Scalar] = field(default_factory=dict)
    """Headline figures that are not table rows (fits, ceilings, boundaries)."""
    tables: dict[str, list[dict[str, Scalar]]] = field(default_factory=dict)
    """Further tables, by title (e.g. every rung of a ladder)."""
    started_at: str = ""
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratios"] = [{**asdict(r), "met": r.met} for r in self.ratios]
        return data


def median(values: Iterable[float]) -> float:
    """The median of the finite values, NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def safe_ratio(numerator: float, denominator: float) -> float:
    if denominator <= 0 or not math.isfinite(numerator) or not math.isfinite(denominator):
        return math.nan
    return numerator / denominator


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- machine and versions --------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine a figure was measured on; load average because this host is shared."""
    try:
        load: list[float] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": load,
    }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


# -- results files ---------------------------------------------------------------


def entry(result: BenchResult) -> dict[str, Any]:
    """A result as stored: its figures plus the machine and versions that produced them."""
    return {**result.as_dict(), "machine": machine(), "versions": versions()}


def _atomic_write(path: Path, text: str) -> None:
    staging = path.with_suffix(path.suffix + ".tmp")
    staging.write_text(text)
    staging.replace(path)


def write_results(
    results: Sequence[BenchResult], results_dir: Path = RESULTS_DIR, date: str | None = None
) -> tuple[Path, Path]:
    """Merge ``results`` (by benchmark name) into ``<date>.json``; rewrite ``<date>.md``."""
    day = date or datetime.now(UTC).strftime("%Y-%m-%d")
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{day}.json"
    document: dict[str, Any] = {"schema": SCHEMA, "date": day, "benchmarks": {}}
    if json_path.exists():
        try:
            loaded = json.loads(json_path.read_text())
            if isinstance(loaded, dict) and isinstance(loaded.get("benchmarks"), dict):
                document["benchmarks"] = loaded["benchmarks"]
        except ValueError:
            pass  # a damaged file is replaced, not merged
    for result in results:
        document["benchmarks"][result.name] = entry(result)
    _atomic_write(json_path, json.dumps(document, indent=2, default=_jsonable) + "\n")
    md_path = results_dir / f"{day}.md"
    _atomic_write(md_path, render_document(document))
    return json_path, md_path


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in results")


# -- Markdown ----------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if magnitude < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return []
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def ratio_rows(ratios: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for ratio in ratios:
        target = ratio.get("target")
        met = ratio.get("met")
        rows.append(
            {
                "ratio": ratio["name"],
                "value": ratio["value"],
                "target": f"≥ {fmt(target)}" if target is not None else "–",
                "met": "–" if met is None else ("✅" if met else "❌"),
                "detail": ratio.get("detail", ""),
            }
        )
    return rows


def render_entry(data: Mapping[str, Any]) -> list[str]:
    mach, vers = data["machine"], data["versions"]
    lines = [
        f"### {data['name']} ({data['size']}, {data['started_at']}, {data['duration_s']:.0f} s)",
        "",
        f"Machine: {mach['cpu_model']}, {mach['cores']} cores, {mach['platform']}, "
        f"load average {mach.get('load_average')}.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".  ",
        "Parameters: " + ", ".join(f"{k}={fmt(v)}" for k, v in data["parameters"].items()) + ".",
        "",
    ]
    lines += markdown_table(data["rows"])
    for title, table in data.get("tables", {}).items():
        lines += ["", f"{title}:", "", *markdown_table(table)]
    if data.get("figures"):
        figures = [{"figure": k, "value": v} for k, v in data["figures"].items()]
        lines += ["", *markdown_table(figures)]
    if data["ratios"]:
        lines += ["", *markdown_table(ratio_rows(data["ratios"]))]
    if data["notes"]:
        lines += ["", *(f"- {note}" for note in data["notes"])]
    return [*lines, ""]


def render_document(document: Mapping[str, Any]) -> str:
    benchmarks: Mapping[str, Any] = document["benchmarks"]
    lines = [f"# fanbench benchmarks, {document['date']}", ""]
    summary = [
        {"benchmark": name, **row}
        for name, data in benchmarks.items()
        for row in ratio_rows(data["ratios"])
    ]
    if summary:
        lines += ["## Ratios against targets", "", *markdown_table(summary), ""]
    lines += ["## Figures", ""]
    for data in benchmarks.values():
        lines += render_entry(data)
    return "\n".join(lines)


def render_results(results: Sequence[BenchResult]) -> str:
    """The Markdown for results just measured (what ``python -m bench`` prints)."""
    return "\n".join(line for result in results for line in render_entry(entry(result)))
