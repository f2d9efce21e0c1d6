"""The report writer and the charts: known answers, offline HTML, valid files, corrupt runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

from fanbench_common.errors import RunDirError
from fanbench_common.rundir import Run, read_run
from reports import charts
from reports.analysis import gather, per_message, per_second
from reports.prices import Prices
from reports.render import CHART_FILES, json_ready, write_report
from tests.reports.synthetic import build_run

CHROMIUM = Path("/usr/bin/chromium")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Anything the page could fetch: src/href/srcset attributes, CSS url(...) and @import.
FETCHING = re.compile(
    r"""(?:\b(?:src|href|srcset|action|poster)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?)"""
    r"""(?!data:|#)([^"'\s)>]+)""",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report of a clean synthetic run: 5 clients x 10 messages, 10 ms to everyone."""
    run_dir = build_run(
        tmp_path_factory.mktemp("render") / "run", clients=5, messages_per_sender=10
    )
    return write_report(run_dir, Prices())


def summary_of(index: Path) -> dict[str, Any]:
    def no_nan(constant: str) -> None:
        raise AssertionError(f"summary.json holds {constant}, which is not JSON")

    result: dict[str, Any] = json.loads(
        (index.parent / "summary.json").read_text(), parse_constant=no_nan
    )
    return result


def test_every_file_is_written_and_valid(report: Path) -> None:
    out = report.parent
    assert report == out / "index.html"
    assert {"index.html", "report.md", "summary.json"} <= {p.name for p in out.iterdir()}
    for name in CHART_FILES:
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(PNG_SIGNATURE), name
        height, width = matplotlib.image.imread(out / f"{name}.png").shape[:2]
        assert (height > 400, width > 800) == (True, True), name
        root = ET.parse(out / f"{name}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg", name


def test_summary_known_answers(report: Path) -> None:
    summary = summary_of(report)
    assert summary["summary_version"] == 1
    counts = summary["counts"]
    assert (counts["messages"], counts["expected"], counts["delivered"], counts["lost"]) == (
        50,
        200,
        200,
        0,
    )
    assert summary["latency_ms"]["from_sent"]["p50"] == pytest.approx(10.0)
    assert summary["latency_ms"]["from_sent"]["p99"] == pytest.approx(10.0)
    assert summary["latency_ms"]["from_intended"]["max"] == pytest.approx(10.0)
    cost = summary["cost"]
    assert cost["usage"]["api_gateway_messages"] == {"in": 50, "out": 200, "total": 250}
    assert cost["breakdown_usd"]["api_gateway_messages"] == pytest.approx(250e-6)
    assert cost["usd_per_million_messages"] > 0


def test_dropped_and_duplicated_pairs_are_counted(tmp_path: Path) -> None:
    run_dir = build_run(
        tmp_path / "run", clients=4, messages_per_sender=3,
        drop=[(0, 0, 1), (2, 1, 3)], duplicate=[(1, 2, 0)], latency_ms=25.0,
    )  # fmt: skip
    summary = summary_of(write_report(run_dir, Prices()))
    counts = summary["counts"]
    assert (counts["expected"], counts["delivered"], counts["lost"]) == (36, 34, 2)
    assert counts["duplicates"] == 1
    assert summary["rates"]["loss"]["rate"] == pytest.approx(2 / 36)
    assert summary["latency_ms"]["from_sent"]["p50"] == pytest.approx(25.0)
    markdown = (run_dir / "report" / "report.md").read_text()
    assert "| Lost | 2 (5.556 %" in markdown


def test_a_run_with_no_deliveries_reports_nulls_and_empty_charts(tmp_path: Path) -> None:
    every_pair = [(s, q, r) for s in range(3) for q in range(2) for r in range(3) if r != s]
    run_dir = build_run(tmp_path / "run", clients=3, messages_per_sender=2, drop=every_pair)
    summary = summary_of(write_report(run_dir, Prices()))
    assert summary["latency_ms"]["from_sent"]["p50"] is None
    assert summary["counts"]["lost"] == 12
    assert summary["cost"]["usage"]["api_gateway_messages"]["out"] == 0
    for name in CHART_FILES:
        assert (run_dir / "report" / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_index_html_fetches_nothing_and_inlines_every_chart(report: Path) -> None:
    page = report.read_text()
    assert FETCHING.findall(page) == []
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    images = re.findall(r'<img[^>]*src="([^"]*)"', page)
    assert len(images) == len(CHART_FILES)
    assert all(src.startswith("data:image/png;base64,") for src in images)


def test_the_fetch_detector_sees_remote_resources() -> None:
    assert FETCHING.findall('<img src="https://cdn.example/x.png">') == [
        "https://cdn.example/x.png"
    ]
    assert FETCHING.findall("<style>@import url(//fonts.example/f.css)</style>")
    assert FETCHING.findall('<img src="data:image/png;base64,AAAA">') == []


def test_report_md_links_each_png(report: Path) -> None:
    markdown = (report.parent / "report.md").read_text()
    assert markdown.startswith("# fanbench report — optimized")
    for name in CHART_FILES:
        assert f"({name}.png)" in markdown
    assert "| Messages sent | 50 |" in markdown


def test_a_token_in_the_scenario_is_redacted(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run", scenario={"token": "s3cret-token"})
    index = write_report(run_dir, Prices())
    for name in ("index.html", "report.md", "summary.json"):
        assert "s3cret-token" not in (index.parent / name).read_text(), name


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda run: (run / "records" / "sends.npz").unlink(), "records/sends.npz"),
        (lambda run: (run / "run.json").write_text('{"schema_version": 1, "scen'), "run.json"),
        (
            lambda run: (run / "records" / "deliveries.npz").write_bytes(b"PK\x03\x04 cut"),
            "deliveries.npz",
        ),
    ],
    ids=["missing-sends", "truncated-run-json", "corrupt-deliveries"],
)
def test_a_damaged_run_dir_raises_run_dir_error_naming_the_piece(
    tmp_path: Path, damage: Any, named: str
) -> None:
    run_dir = build_run(tmp_path / "run")
    damage(run_dir)
    with pytest.raises(RunDirError, match=re.escape(named)):
        write_report(run_dir, Prices())
    assert not (run_dir / "report" / "index.html").exists()


def test_json_ready_turns_nan_into_null_and_unwraps_numpy() -> None:
    value = {
        "a": float("nan"),
        "b": np.float64(1.5),
        "c": np.array([1, 2]),
        "d": (np.int64(3), float("inf")),
    }
    assert json_ready(value) == {"a": None, "b": 1.5, "c": [1, 2], "d": [3, None]}


def test_titles_name_the_chart_the_variant_and_the_scenario() -> None:
    meta = {
        "variant": "optimized",
        "scenario": {"users": 20, "send_interval_s": 2.0, "room_size": 0},
    }
    assert (
        charts.title("Fan-out latency", meta) == "Fan-out latency — optimized, 20 users, 1 msg/2 s"
    )
    rooms = {"variant": "baseline", "scenario": {"users": 8, "send_interval_s": 1, "room_size": 4}}
    assert charts.describe(rooms) == "baseline, 8 users, rooms of 4, 1 msg/s"


def test_quantile_curve_reaches_the_maximum_at_the_right_percentile() -> None:
    values = np.arange(1, 1001, dtype=np.float64)
    x, y = charts.quantile_curve(values)
    assert x[0] == 1.0
    assert y[0] == 1.0
    assert x[-1] == pytest.approx(2000.0)
    assert y[-1] == 1000.0
    assert y[np.searchsorted(x, 100.0)] == pytest.approx(990, abs=1)  # 1/(1-0.99) = 100


@pytest.fixture
def two_runs(tmp_path: Path) -> list[tuple[str, Run]]:
    runs = [
        read_run(build_run(tmp_path / name, latency_ms=ms))
        for name, ms in (("a", 10.0), ("b", 30.0))
    ]
    return [(f"{run.meta['variant']}{i}", run) for i, run in enumerate(runs)]


def test_every_chart_overlays_several_series_and_tolerates_empty_data(
    two_runs: list[tuple[str, Run]], tmp_path: Path
) -> None:
    lat = [(label, gather(run).latencies) for label, run in two_runs]
    seconds = [(label, per_second(gather(run))) for label, run in two_runs]
    messages = [(label, per_message(gather(run))) for label, run in two_runs]
    keys = ("second", "sends", "deliveries", "lost", "errors", "p50_ms", "p99_ms")
    empty_seconds = {key: np.array([]) for key in keys}
    empty_messages = {"audience": np.array([], dtype=np.int64), "completion_ms": np.array([])}
    figures: list[Figure] = [
        charts.latency_distribution(lat, "two"),
        charts.latency_distribution([("bare array", np.array([5.0, 7.0]))], "array"),
        charts.latency_distribution([("none", np.array([]))], "empty"),
        charts.percentiles_over_time(seconds, "two", warmup_s=2.0),
        charts.percentiles_over_time([("none", empty_seconds)], "empty"),
        charts.fanout_completion(messages, "two"),
        charts.fanout_completion([("none", empty_messages)], "empty"),
        charts.loss_and_errors(seconds, "two"),
        charts.loss_and_errors([("none", empty_seconds)], "empty"),
        charts.throughput(seconds, "two"),
        charts.throughput([("none", empty_seconds)], "empty"),
    ]
    legend = figures[0].axes[0].get_legend()
    assert legend is not None
    assert next(t.get_text() for t in legend.get_texts()) == "optimized0, from send"
    for index, figure in enumerate(figures):
        png, svg = charts.save(figure, tmp_path / f"chart{index}")
        assert png.read_bytes().startswith(PNG_SIGNATURE)
        assert ET.parse(svg).getroot() is not None
    texts = [t.get_text() for t in figures[2].axes[0].texts]
    assert texts == ["no deliveries measured"]


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}", *arguments,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_headless_chromium_renders_the_page_offline(report: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.fail("chromium is not installed: run `make chromium`")
    shot = tmp_path / "shot.png"
    done = chromium(
        f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri(), profile=tmp_path / "p1"
    )
    assert shot.is_file(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    not_white = np.mean(np.any(pixels < 0.9, axis=-1))
    assert not_white > 0.01, f"screenshot nearly blank ({not_white:.1%} non-white pixels)"
    assert float(np.std(pixels)) > 0.03

    dom = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "p2").stdout
    images = re.findall(r"<img[^>]*>", dom)
    assert len(images) == len(CHART_FILES), dom[:2000]
    assert all('src="data:image/png;base64,' in image for image in images)
    assert "fanbench report — optimized" in dom
