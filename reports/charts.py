"""The report's charts, in one house style, as matplotlib Figures (no pyplot, no global state).

Every chart takes ``series``: a list of ``(label, data)`` pairs, one per run, so
a comparison overlays runs on the same axes with the same function; a single
run is a one-item list. The data are what ``reports.analysis`` returns
(``Latencies`` or a bare array of ms, ``per_second()``, ``per_message()``).
Empty data give an empty chart that says "no data" rather than an error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import matplotlib as mpl
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, ScalarFormatter

from reports.analysis import Latencies

# Okabe & Ito's colour-blind-safe palette (https://jfly.uni-koeln.de/color/), most distinct first.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
STYLE: dict[Any, Any] = {  # matplotlib rcParams
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.grid": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.6,
    "svg.hashsalt": "fanbench",
    "svg.fonttype": "path",
}
FIGSIZE = (8.0, 4.5)
DPI = 150
QUANTILE_POINTS = 600
LOG_Y_RATIO = 20.0

LatencyData = Latencies | npt.NDArray[Any]
Series = Sequence[tuple[str, Any]]


@contextmanager
def _house_style() -> Iterator[None]:
    with mpl.rc_context(STYLE):
        yield


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def describe(meta: Mapping[str, Any]) -> str:
    """'optimized, 20 users, 1 msg/2 s' from a run.json (or a run's meta dict)."""
    scenario = meta.get("scenario", {})
    parts = [str(meta.get("variant") or "unlabelled")]
    users = scenario.get("users")
    if users is not None:
        parts.append(f"{users} users")
    room = int(scenario.get("room_size") or 0)
    if room > 0:
        parts.append(f"rooms of {room}")
    interval = scenario.get("send_interval_s")
    if interval:
        interval = float(interval)
        parts.append(f"1 msg/{interval:g} s" if interval != 1 else "1 msg/s")
    size = scenario.get("message_bytes")
    if size:
        parts.append(f"{size} B")
    return ", ".join(parts)


def title(what: str, meta: Mapping[str, Any]) -> str:
    return f"{what} — {describe(meta)}"


def _figure(rows: int = 1) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(FIGSIZE[0], FIGSIZE[1] if rows == 1 else 2.9 * rows), dpi=DPI)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return figure, list(axes)


def _no_data(axes: Axes, note: str = "no data") -> None:
    axes.text(0.5, 0.5, note, transform=axes.transAxes, ha="center", va="center",
              fontsize=12, color="#777777")  # fmt: skip


def _finish(
    figure: Figure,
    heading: str,
    legend_axes: Sequence[Axes],
    legend_at: Literal["best", "upper left"] = "best",
) -> Figure:
    figure.suptitle(heading, fontsize=STYLE["axes.titlesize"], fontweight="bold")
    for axes in legend_axes:
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc=legend_at)
    figure.set_layout_engine("constrained")
    figure.align_ylabels()
    return figure


def _per_second_line(
    axes: Axes, second: npt.NDArray[Any], values: npt.NDArray[Any], colour: str, label: str | None
) -> None:
    """One-second counts as a step line covering each whole bin, the last one included."""
    if not len(second):
        return
    edges = np.append(second, second[-1] + 1)
    axes.step(edges, np.append(values, values[-1]), where="post", color=colour, label=label)


def _latency_arrays(data: LatencyData) -> tuple[npt.NDArray[Any], npt.NDArray[Any] | None]:
    if isinstance(data, Latencies):
        return data.from_sent_ms, data.from_intended_ms
    return np.asarray(data, dtype=np.float64), None


def quantile_curve(values: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """(1/(1-q), value at q) on a log grid up to the largest value, as HdrHistogram plots it."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    top = 2.0 * len(ordered)  # the largest value sits at q = 1 - 1/(2n)
    x = np.unique(np.geomspace(1.0, top, QUANTILE_POINTS))
    q = 1.0 - 1.0 / x
    return x, np.quantile(ordered, q, method="higher")


def _percentile_axis(axes: Axes, largest_x: float) -> None:
    axes.set_xscale("log")
    ticks = [1.0, 2.0, 10.0]
    while ticks[-1] < largest_x:
        ticks.append(ticks[-1] * 10)
    labels = ["0%", "50%", "90%"] + [
        f"{100 - 100 / t:.{len(str(int(t))) - 3}f}%" for t in ticks[3:]
    ]
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticks(ticks, labels)
    axes.set_xlim(1.0, max(ticks[-1], 2.0))


def _latency_y_axis(axes: Axes, plotted: Sequence[npt.NDArray[Any]]) -> None:
    """Linear from 0, or logarithmic when the tail is over LOG_Y_RATIO times the median."""
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in plotted]) if plotted else None
    positive = values is not None and len(values) > 0 and float(np.min(values)) > 0
    if positive and values is not None and np.max(values) > LOG_Y_RATIO * np.median(values):
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(ScalarFormatter())
        axes.set_ylabel(f"{axes.get_ylabel()}, log scale")
    else:
        axes.set_ylim(bottom=0)


def latency_distribution(series: Series, heading: str) -> Figure:
    """Latency by percentile on a log axis; solid from the actual send, dashed from the intended."""
    with _house_style():
        figure, (axes,) = _figure()
        largest, plotted = 1.0, []
        for index, (label, data) in enumerate(series):
            sent, intended = _latency_arrays(data)
            if not len(sent):
                continue
            several = len(series) > 1
            x, y = quantile_curve(sent)
            sent_label = f"{label}, from send" if several else "from send"
            axes.plot(x, y, drawstyle="steps-post", color=_colour(index), label=sent_label)
            plotted.append(sent)
            if intended is not None and len(intended):
                x, y = quantile_curve(intended)
                intended_label = (
                    f"{label}, from intended send"
                    if several
                    else "from intended send (corrects for coordinated omission)"
                )
                axes.plot(x, y, drawstyle="steps-post", color=_colour(index), linestyle="--",
                          label=intended_label)  # fmt: skip
                plotted.append(intended)
            largest = max(largest, float(x[-1]))
        _percentile_axis(axes, largest)
        if largest == 1.0:
            _no_data(axes, "no deliveries measured")
        axes.set_xlabel("percentile (log scale of 1/(1 − q))")
        axes.set_ylabel("fan-out latency per recipient (ms)")
        _latency_y_axis(axes, plotted)
        # Percentile curves rise to the right, so the upper left is the empty corner.
        return _finish(figure, heading, [axes], legend_at="upper left")


def percentiles_over_time(series: Series, heading: str, warmup_s: float = 0.0) -> Figure:
    """p50 (solid) and p99 (dashed) of each second's receipts, from ``per_second()``."""
    with _house_style():
        figure, (axes,) = _figure()
        drawn = False
        for index, (label, data) in enumerate(series):
            second = np.asarray(data["second"])
            for key, style, name in (("p50_ms", "-", "p50"), ("p99_ms", "--", "p99")):
                values = np.asarray(data[key], dtype=np.float64)
                if np.any(np.isfinite(values)):
                    prefix = f"{label} " if len(series) > 1 else ""
                    axes.plot(second + 0.5, values, style, color=_colour(index), marker=".",
                              markersize=4, label=f"{prefix}{name}")  # fmt: skip
                    drawn = True
        if warmup_s > 0:
            axes.axvspan(0, warmup_s, color="#eeeeee", zorder=0, label="warm-up (not measured)")
        if not drawn:
            _no_data(axes, "no deliveries measured")
        axes.set_xlabel("time since start of test (s)")
        axes.set_ylabel("fan-out latency (ms)")
        span = max((len(data["second"]) for _, data in series), default=0)
        axes.set_xlim(0, max(span, axes.get_xlim()[1], 1))
        axes.set_ylim(bottom=0)
        return _finish(figure, heading, [axes])


def fanout_completion(series: Series, heading: str) -> Figure:
    """Per message, when its last recipient got it, against its audience; medians joined."""
    with _house_style():
        figure, (axes,) = _figure()
        rng = np.random.default_rng(0)  # horizontal jitter only, so equal audiences stay readable
        drawn = False
        for index, (label, data) in enumerate(series):
            audience = np.asarray(data["audience"], dtype=np.float64)
            completion = np.asarray(data["completion_ms"], dtype=np.float64)
            if not len(completion):
                continue
            prefix = f"{label}: " if len(series) > 1 else ""
            jitter = rng.uniform(-0.15, 0.15, len(audience))
            axes.scatter(audience + jitter, completion, s=8, alpha=0.35, color=_colour(index),
                         linewidths=0, label=f"{prefix}one message")  # fmt: skip
            sizes = np.unique(audience)
            medians = [float(np.median(completion[audience == size])) for size in sizes]
            axes.plot(sizes, medians, "-D", color=_colour(index), markersize=7,
                      markeredgecolor="black", label=f"{prefix}median")  # fmt: skip
            drawn = True
        if not drawn:
            _no_data(axes, "no message reached anyone")
        else:
            largest = max(float(np.max(np.asarray(d["audience"], dtype=np.float64), initial=0))
                          for _, d in series)  # fmt: skip
            axes.set_xlim(0, largest + max(1.0, 0.05 * largest))
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("audience: expected recipients of the message")
        axes.set_ylabel("fan-out completion: last recipient (ms)")
        _latency_y_axis(axes, [np.asarray(d["completion_ms"], dtype=np.float64) for _, d in series])
        return _finish(figure, heading, [axes])


def loss_and_errors(series: Series, heading: str) -> Figure:
    """Lost deliveries by send second (top) and error records per second (bottom)."""
    with _house_style():
        figure, (lost_axes, error_axes) = _figure(rows=2)
        totals = {"lost": 0, "errors": 0}
        for index, (label, data) in enumerate(series):
            second = np.asarray(data["second"])
            for axes, key in ((lost_axes, "lost"), (error_axes, "errors")):
                values = np.asarray(data[key])
                totals[key] += int(values.sum())
                _per_second_line(
                    axes, second, values, _colour(index), label if len(series) > 1 else None
                )
        for axes, key, note in (
            (lost_axes, "lost", "no loss"),
            (error_axes, "errors", "no errors"),
        ):
            if not totals[key]:
                _no_data(axes, note)
            axes.set_ylim(bottom=0, top=max(1.0, axes.get_ylim()[1]))
            axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        lost_axes.set_ylabel("lost deliveries\n(by second sent)")
        error_axes.set_ylabel("error records / s")
        error_axes.set_xlabel("time since start of test (s)")
        error_axes.set_xlim(left=0)
        return _finish(figure, heading, [lost_axes])


def throughput(series: Series, heading: str) -> Figure:
    """Messages sent per second (top) and frames received per second (bottom)."""
    with _house_style():
        figure, (send_axes, receive_axes) = _figure(rows=2)
        totals = {"sends": 0, "deliveries": 0}
        for index, (label, data) in enumerate(series):
            second = np.asarray(data["second"])
            for axes, key in ((send_axes, "sends"), (receive_axes, "deliveries")):
                values = np.asarray(data[key])
                totals[key] += int(values.sum())
                _per_second_line(
                    axes, second, values, _colour(index), label if len(series) > 1 else None
                )
        for axes, key, note in ((send_axes, "sends", "nothing sent"),
                                (receive_axes, "deliveries", "nothing received")):  # fmt: skip
            if not totals[key]:
                _no_data(axes, note)
            axes.set_ylim(bottom=0, top=max(1.0, axes.get_ylim()[1]))
        send_axes.set_ylabel("sends / s")
        receive_axes.set_ylabel("receipts / s")
        receive_axes.set_xlabel("time since start of test (s)")
        receive_axes.set_xlim(left=0)
        return _finish(figure, heading, [send_axes])


def block_ratios(series: Series, heading: str) -> Figure:
    """Each time block's p50 (solid) and p99 (dashed) ratio of B to A, from a side-by-side
    comparison's ``blocks`` (``reports.verdict.side_by_side``); 1 is no difference."""
    with _house_style():
        figure, (axes,) = _figure()
        drawn = False
        for index, (label, blocks) in enumerate(series):
            data = blocks["series"]
            middle = np.asarray(data["start_s"], dtype=np.float64) + blocks["block_s"] / 2
            for key, style, name in (("p50_ratio", "-", "p50"), ("p99_ratio", "--", "p99")):
                values = np.asarray([np.nan if v is None else v for v in data[key]], np.float64)
                if np.any(np.isfinite(values)):
                    axes.plot(middle, values, style, color=_colour(index), marker="o",
                              markersize=4, label=f"{label} {name}")  # fmt: skip
                    drawn = True
        axes.axhline(1.0, color="#777777", linewidth=0.8, label="no difference")
        if not drawn:
            _no_data(axes, "no block with enough deliveries on both sides")
        axes.set_xlabel("time since the first measured send (s)")
        axes.set_ylabel("latency ratio, B / A")
        return _finish(figure, heading, [axes])


def save(figure: Figure, stem: Path) -> tuple[Path, Path]:
    """Write ``stem``.png and ``stem``.svg; returns both paths."""
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    with _house_style():
        figure.savefig(png, dpi=DPI, metadata={"Software": None})
        # The first save placed everything; the second keeps that layout instead of solving it
        # again (constrained layout is a third of a report's CPU).
        figure.set_layout_engine("none")
        figure.savefig(svg, metadata={"Date": None, "Creator": None})
    return png, svg
