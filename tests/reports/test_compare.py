"""Comparison of runs: known latency ratios and loss differences, labels, scenario checks."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanbench_common.errors import RunDirError
from reports.calibration import Model, false_positives
from reports.compare import (
    ScenarioMismatch,
    compare_and_write,
    comparison_json,
    run_labels,
    scenario_differences,
    verdict_sentences,
    write_comparison,
)
from reports.verdict import Interval, loss_sentence, ratio_sentence
from tests.reports.synthetic import build_run

CLIENTS, MESSAGES = 8, 20  # 8 x 7 x 20 = 1120 deliveries per run


def jittered(base_ms: float, seed: int) -> Callable[[int, int, int], float]:
    """``base_ms`` times an independent uniform 0.8–1.2 factor per delivery."""
    factors = np.random.default_rng(seed).uniform(0.8, 1.2, size=(CLIENTS, MESSAGES, CLIENTS))
    return lambda sender, seq, receiver: base_ms * float(factors[sender, seq, receiver])


def make(path: Path, **kwargs: Any) -> Path:
    return build_run(path, clients=CLIENTS, messages_per_sender=MESSAGES, **kwargs)


def contains(interval: dict[str, Any], value: float) -> bool:
    low, high = interval["ci95"]
    return bool(low <= value <= high)


def document(index: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((index.parent / "comparison.json").read_text())
    return loaded


# --- the pure parts --------------------------------------------------------------------------


def test_labels_are_variants_unless_empty_or_shared() -> None:
    paths = [Path("runs/a"), Path("runs/b"), Path("runs/c")]
    assert run_labels(["baseline", "optimized", "x"], paths) == ["baseline", "optimized", "x"]
    assert run_labels(["baseline", "", "optimized"], paths) == ["baseline", "b", "optimized"]
    assert run_labels(["optimized", "optimized", "baseline"], paths) == ["a", "b", "baseline"]


def test_clashing_directory_names_are_numbered() -> None:
    paths = [Path("one/run"), Path("two/run")]
    assert run_labels(["", ""], paths) == ["run #1", "run #2"]


def test_scenario_differences_name_the_key_and_both_values() -> None:
    reference = {
        "users": 5,
        "message_bytes": 64,
        "variant": "baseline",
        "run_dir": "a",
        "token": "",
    }
    other = {"users": 10, "message_bytes": 64, "variant": "optimized", "run_dir": "b", "token": "t"}
    assert scenario_differences([reference, other], ["baseline", "optimized"]) == [
        "users 5 (baseline) vs 10 (optimized)"
    ]
    assert scenario_differences([reference, {"users": 5}], ["a", "b"]) == [
        "message_bytes 64 (a) vs <missing> (b)"
    ]


@pytest.mark.parametrize(
    ("ratio", "sentence"),
    [
        (Interval(1 / 7.9, 1 / 8.8, 1 / 7.1),
         "optimized p99 latency is 7.90× lower than baseline (95 % CI 7.10–8.80×)"),
        (Interval(1.3, 1.2, 1.45),
         "optimized p99 latency is 1.30× higher than baseline (95 % CI 1.20–1.45×)"),
        (Interval(12.34, 11.0, 14.0),
         "optimized p99 latency is 12.3× higher than baseline (95 % CI 11.0–14.0×)"),
        (Interval(1.02, 0.95, 1.1),
         "optimized p99 latency is 1.02× that of baseline (95 % CI 0.95–1.10×): "
         "no clear difference"),
        (Interval(math.nan, math.nan, math.nan),
         "optimized p99 latency: no comparison with baseline (too few measured deliveries)"),
    ],
)  # fmt: skip
def test_ratio_sentences(ratio: Interval, sentence: str) -> None:
    assert ratio_sentence("optimized", "baseline", "p99", ratio) == sentence


def test_loss_sentence() -> None:
    diff = Interval(-0.0201, -0.023, -0.017)
    assert loss_sentence("optimized", "baseline", (0.0, 0.0201), diff) == (
        "loss rate: optimized 0.00 % vs baseline 2.01 % "
        "(difference −2.01 points, 95 % CI −2.30 to −1.70)"
    )
    nothing = Interval(math.nan, math.nan, math.nan)
    assert "no expected deliveries" in loss_sentence("a", "b", (0.0, 0.0), nothing)


# --- whole comparisons on synthetic runs -----------------------------------------------------


def test_a_four_times_slower_run_is_reported_four_times_higher(tmp_path: Path) -> None:
    fast = make(tmp_path / "fast", variant="optimized", latency_ms=jittered(10.0, seed=1))
    slow = make(tmp_path / "slow", variant="baseline", latency_ms=jittered(40.0, seed=2))
    index = write_comparison([fast, slow], tmp_path / "out", force=False, draw_charts=False)
    delta = document(index)["deltas"][0]
    assert delta["label"] == "baseline"
    assert delta["reference"] == "optimized"
    for figure in ("p50_ratio", "p99_ratio"):
        assert delta[figure]["point"] == pytest.approx(4.0, rel=0.05)
        assert contains(delta[figure], 4.0)
    sentence = delta["sentences"][0]
    assert re.fullmatch(
        r"baseline p50 latency is (3\.\d\d|4\.\d\d)× higher than optimized "
        r"\(95 % CI \d\.\d\d–\d\.\d\d×\)",
        sentence,
    ), sentence


def test_the_reverse_order_says_lower(tmp_path: Path) -> None:
    fast = make(tmp_path / "fast", variant="optimized", latency_ms=jittered(10.0, seed=1))
    slow = make(tmp_path / "slow", variant="baseline", latency_ms=jittered(40.0, seed=2))
    delta = document(
        write_comparison([slow, fast], tmp_path / "out", force=False, draw_charts=False)
    )["deltas"][0]
    assert contains(delta["p50_ratio"], 0.25)
    assert delta["sentences"][1].startswith("optimized p99 latency is ")
    assert " lower than baseline (95 % CI " in delta["sentences"][1]


def test_identical_runs_show_no_clear_difference(tmp_path: Path) -> None:
    a = make(tmp_path / "a", variant="baseline", latency_ms=jittered(10.0, seed=3))
    b = make(tmp_path / "b", variant="optimized", latency_ms=jittered(10.0, seed=3))
    delta = document(write_comparison([a, b], tmp_path / "out", force=False, draw_charts=False))[
        "deltas"
    ][0]
    for figure in ("p50_ratio", "p99_ratio"):
        assert delta[figure]["point"] == pytest.approx(1.0)
        assert contains(delta[figure], 1.0)
    assert delta["sentences"][0].endswith("no clear difference")
    # Both lost nothing: the point is 0 and the interval is not a false "0 to 0". It is as
    # wide as 160 messages a side allow, whose recipients share one fate each; counting
    # the 1,120 deliveries as independent trials made it four times too narrow.
    difference = delta["loss_rate_difference"]
    assert difference["point"] == 0.0
    low, high = difference["ci95"]
    assert low < 0.0 < high
    assert 0.02 < high - low < 0.05


def test_a_known_loss_difference(tmp_path: Path) -> None:
    # 28 of 1120 expected deliveries dropped from the reference: 2.50 %.
    pairs = [
        (sender, seq, (sender + 1) % CLIENTS)
        for sender in range(CLIENTS)
        for seq in range(MESSAGES)
    ]
    dropped = pairs[:28]
    lossy = make(tmp_path / "lossy", variant="baseline", drop=dropped)
    clean = make(tmp_path / "clean", variant="optimized")
    doc = document(
        write_comparison([lossy, clean], tmp_path / "out", force=False, draw_charts=False)
    )
    delta = doc["deltas"][0]
    assert delta["loss_rate_difference"]["point"] == pytest.approx(-0.025)
    assert contains(delta["loss_rate_difference"], -0.025)
    assert delta["sentences"][2].startswith(
        "loss rate: optimized 0.00 % vs baseline 2.50 % (difference −2.50 points, 95 % CI −"
    )
    assert [run["summary"]["counts"]["lost"] for run in doc["runs"]] == [28, 0]


def test_outputs_are_written_and_self_contained(tmp_path: Path) -> None:
    a = make(tmp_path / "a", variant="baseline", latency_ms=jittered(40.0, seed=4))
    b = make(tmp_path / "b", variant="optimized", latency_ms=jittered(10.0, seed=5))
    index = write_comparison([a, b], tmp_path / "out", force=False)
    assert index == tmp_path / "out" / "index.html"
    markdown = (tmp_path / "out" / "comparison.md").read_text()
    page = index.read_text()
    sentences = document(index)["deltas"][0]["sentences"]
    for sentence in sentences:
        assert f"- {sentence}" in markdown
    assert "| optimized | 4." in markdown  # the delta table, in the sentences' direction
    assert "× lower (" in markdown
    assert "optimized p50 latency is " in page
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page)
    charts = document(index)["charts"]
    assert [chart["name"] for chart in charts] == [
        "latency_distribution", "latency_over_time", "fanout_completion", "loss_errors"
    ]  # fmt: skip
    for chart in charts:
        assert (index.parent / chart["png"]).read_bytes().startswith(b"\x89PNG")
        assert (index.parent / chart["svg"]).read_text().lstrip().startswith("<?xml")
        assert f"![{chart['title']}]({chart['png']})" in markdown
    assert page.count('src="data:image/png;base64,') == len(charts)


def test_default_output_folder_is_under_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make(tmp_path / "a", variant="baseline")
    b = make(tmp_path / "b", variant="optimized")
    monkeypatch.chdir(tmp_path)
    index = write_comparison([a, b], None, force=False, draw_charts=False)
    assert index.is_file()
    assert re.fullmatch(r"runs/compare-\d{8}T\d{6}Z/index\.html", index.as_posix())


def test_different_scenarios_are_refused_naming_the_key(tmp_path: Path) -> None:
    a = make(tmp_path / "a", variant="baseline")
    b = make(tmp_path / "b", variant="optimized", scenario={"message_bytes": 1024})
    with pytest.raises(
        ScenarioMismatch, match=r"message_bytes 64 \(baseline\) vs 1024 \(optimized\)"
    ):
        write_comparison([a, b], tmp_path / "out", force=False, draw_charts=False)
    assert not (tmp_path / "out").exists()
    index = write_comparison([a, b], tmp_path / "out", force=True, draw_charts=False)
    assert "scenarios differ (compared with --force): message_bytes 64" in index.read_text()


def test_labels_and_tokens_are_not_scenario(tmp_path: Path) -> None:
    a = make(tmp_path / "a", variant="baseline", scenario={"run_dir": "a", "variant": "baseline"})
    b = make(tmp_path / "b", variant="optimized",
             scenario={"run_dir": "b", "variant": "optimized", "token": "<redacted>"})  # fmt: skip
    assert write_comparison([a, b], tmp_path / "out", force=False, draw_charts=False).is_file()


def test_fewer_than_two_runs_are_refused(tmp_path: Path) -> None:
    a = make(tmp_path / "a")
    with pytest.raises(ValueError, match="at least two run directories"):
        write_comparison([a], tmp_path / "out", force=False, draw_charts=False)


def test_an_unreadable_run_is_named(tmp_path: Path) -> None:
    a = make(tmp_path / "a")
    with pytest.raises(RunDirError, match="no such run directory"):
        write_comparison([a, tmp_path / "nope"], tmp_path / "out", force=False, draw_charts=False)


def test_an_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    a, b = make(tmp_path / "a", variant="x"), make(tmp_path / "b", variant="y")
    (tmp_path / "out").write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        write_comparison([a, b], tmp_path / "out", force=False, draw_charts=False)


# --- several runs a side ---------------------------------------------------------------------


def runs_of(tmp_path: Path, name: str, variant: str, scales: list[float]) -> list[Path]:
    """One run per scale: every latency of run ``i`` is ``scales[i]`` times a jittered 10 ms."""
    return [
        make(tmp_path / f"{name}{i}", variant=variant, latency_ms=jittered(10.0 * scale, seed=i))
        for i, scale in enumerate(scales)
    ]


def test_several_runs_a_side_give_a_between_run_verdict(tmp_path: Path) -> None:
    slow = runs_of(tmp_path, "slow", "baseline", [4.0, 4.2, 3.8])
    fast = runs_of(tmp_path, "fast", "optimized", [1.0, 1.05, 0.95])
    doc = document(
        write_comparison(slow, tmp_path / "out", force=False, draw_charts=False, versus=fast)
    )
    assert doc["reference"] == "baseline"
    assert doc["sides"] == [
        {"label": "baseline", "runs": ["slow0", "slow1", "slow2"]},
        {"label": "optimized", "runs": ["fast0", "fast1", "fast2"]},
    ]
    (delta,) = doc["deltas"]
    assert (delta["runs"], delta["between_runs"]) == ([3, 3], True)
    assert contains(delta["p50_ratio"], 0.25)
    assert re.fullmatch(
        r"optimized p50 latency is (3\.\d\d|4\.\d\d)× lower than baseline "
        r"\(95 % CI \d\.\d\d–\d\.\d\d×; 3 vs 3 runs, between-run\)",
        delta["sentences"][0],
    ), delta["sentences"][0]
    assert "one run a side" not in (tmp_path / "out" / "comparison.md").read_text()


def test_run_to_run_spread_is_no_verdict_though_one_pair_of_runs_looks_like_one(
    tmp_path: Path,
) -> None:
    """Identical configurations whose runs differ by 1.75x, as two real runs once did."""
    first = runs_of(tmp_path, "a", "optimized", [1.75, 1.0, 1.4])
    second = runs_of(tmp_path, "b", "optimized", [1.0, 1.7, 1.3])
    # One run a side: messages alone say "1.75x lower", and the page warns that it may not hold.
    single = document(
        write_comparison([first[0], second[0]], tmp_path / "one", force=False, draw_charts=False)
    )["deltas"][0]
    _, high = single["p99_ratio"]["ci95"]
    assert high < 1.0
    assert "one run a side" in (tmp_path / "one" / "comparison.md").read_text()
    # Three runs a side: the runs' spread is in the interval, and it holds 1.
    doc = document(
        write_comparison(first, tmp_path / "three", force=False, draw_charts=False, versus=second)
    )
    (delta,) = doc["deltas"]
    assert [side["label"] for side in doc["sides"]] == ["optimized (A)", "optimized (B)"]
    for figure in ("p50_ratio", "p99_ratio"):
        assert contains(delta[figure], 1.0), delta[figure]
    assert delta["sentences"][1].endswith("between-run): no clear difference")


def test_between_run_loss_intervals_hold_the_pooled_message_interval(tmp_path: Path) -> None:
    lossy = [(sender, 0, (sender + 1) % CLIENTS) for sender in range(CLIENTS)]  # 8 of 1120
    a = [make(tmp_path / "a0", variant="baseline", drop=lossy),
         make(tmp_path / "a1", variant="baseline")]  # fmt: skip
    b = [make(tmp_path / "b0", variant="optimized"), make(tmp_path / "b1", variant="optimized")]
    delta = document(
        write_comparison(a, tmp_path / "out", force=False, draw_charts=False, versus=b)
    )["deltas"][0]
    difference = delta["loss_rate_difference"]
    assert difference["point"] == pytest.approx(-8 / 2240)
    low, high = difference["ci95"]
    assert low < -8 / 2240 < 0.0 < high  # two runs a side cannot rule out equal loss


def test_a_side_without_runs_is_refused(tmp_path: Path) -> None:
    a = make(tmp_path / "a")
    with pytest.raises(ValueError, match="at least one run on each side"):
        write_comparison([a], tmp_path / "out", force=False, draw_charts=False, versus=[])


def test_calibration_identical_pairs_are_called_different_at_most_5_percent() -> None:
    """Between-run verdicts over 400 simulated identical pairs, 3 runs a side (see
    reports/calibration.py for the model and BENCHMARKS.md for the full measurement)."""
    small = Model(messages=200, recipients=10)  # smaller runs, same between-run spread
    for percentile in (50.0, 99.0):
        rates = false_positives(small, 400, 3, seed=7, percentile=percentile, bootstrap_rounds=0)
        assert rates["between_runs"] <= 0.05, (percentile, rates)


def test_one_run_a_side_calls_identical_pairs_different_far_more_often() -> None:
    rates = false_positives(Model(), 40, 2, seed=8, percentile=99.0, bootstrap_rounds=100)
    assert rates["deliveries"] >= 0.5
    assert rates["messages"] >= 0.2  # run-to-run variation, which messages cannot see


def test_uneven_sides_compare_message_by_message_and_say_so(tmp_path: Path) -> None:
    """Three runs against one: no between-run verdict (one side has no spread), so the
    intervals come from the messages, the 4x difference is found, and nothing claims
    to be between-run."""
    slow = runs_of(tmp_path, "slow", "baseline", [4.0, 4.2, 3.8])
    (fast,) = runs_of(tmp_path, "fast", "optimized", [1.0])
    doc = document(
        write_comparison(slow, tmp_path / "out", force=False, draw_charts=False, versus=[fast])
    )
    (delta,) = doc["deltas"]
    assert (delta["runs"], delta["between_runs"]) == ([1, 3], False)
    assert contains(delta["p50_ratio"], 0.25)
    assert delta["p50_ratio"]["ci95"][1] < 0.3
    assert re.fullmatch(
        r"optimized p50 latency is (3\.\d\d|4\.\d\d)× lower than baseline "
        r"\(95 % CI \d\.\d\d–\d\.\d\d×\)",
        delta["sentences"][0],
    ), delta["sentences"][0]
    assert not any("between-run" in sentence for sentence in delta["sentences"])
    assert delta["sentences"][2].startswith("loss rate: optimized 0.00 % vs baseline 0.00 % (")
    assert "one run a side" in (tmp_path / "out" / "comparison.md").read_text()


def test_one_lossy_run_of_three_is_no_loss_verdict(tmp_path: Path) -> None:
    """Messages pooled over runs say "A loses more" (every one of its losses fell in one run);
    the runs' spread says that one run of three proves little. The interval must hold 0."""
    pairs = [(s, q, (s + 1) % CLIENTS) for s in range(CLIENTS) for q in range(MESSAGES)]
    a = [make(tmp_path / "a0", variant="baseline", drop=pairs[:60])]
    a += [make(tmp_path / f"a{i}", variant="baseline") for i in (1, 2)]
    b = [make(tmp_path / f"b{i}", variant="optimized") for i in range(3)]
    delta = document(
        write_comparison(b, tmp_path / "out", force=False, draw_charts=False, versus=a)
    )["deltas"][0]
    difference = delta["loss_rate_difference"]
    assert difference["point"] == pytest.approx(60 / 3360)
    low, high = difference["ci95"]
    assert low < 0.0 < high, difference
    assert high - low > 0.05  # Welch on [5.4 %, 0, 0] vs [0, 0, 0]: about −5.9 to +9.5 points
    assert delta["sentences"][2].endswith("3 vs 3 runs, between-run)")


# --- two sides run at once -------------------------------------------------------------------


def noisy(base_ms: float, seed: int) -> Callable[[int, int, int], float]:
    """``jittered`` times a host noise shared by every run: second ``seq`` is slow or fast
    by up to 2x alike on both sides (the same seed 0), as when both ran at once."""
    host = np.exp(np.random.default_rng(0).normal(0.0, 0.5, MESSAGES))
    jitter = jittered(base_ms, seed)
    return lambda sender, seq, receiver: jitter(sender, seq, receiver) * float(host[seq])


def test_side_by_side_pairs_blocks_so_shared_noise_cancels(tmp_path: Path) -> None:
    a = make(tmp_path / "a", variant="optimized", latency_ms=noisy(20.0, seed=1))
    b = make(tmp_path / "b", variant="optimized:PostConcurrency=2", latency_ms=noisy(26.0, seed=2))
    doc = document(write_comparison([a], tmp_path / "out", force=False, versus=[b],
                                    side_by_side=True))  # fmt: skip
    (delta,) = doc["deltas"]
    assert delta["side_by_side"] is True
    assert contains(delta["p50_ratio"], 1.3)
    assert delta["p50_ratio"]["ci95"][0] > 1.15  # the shared 2x swings cancel
    assert 0 < delta["blocks"]["detectable"]["p50"] < 0.15
    blocks = delta["blocks"]
    assert blocks["count"] == len(blocks["series"]["p50_ratio"]) >= 8
    assert re.fullmatch(
        r"optimized:PostConcurrency=2 p50 latency is 1\.\d\d× higher than optimized "
        r"\(95 % CI 1\.\d\d–1\.\d\d×; \d+ blocks of [\d.]+ s, side by side\); "
        r"this run could have seen a \d+\.\d % change in p50",
        delta["sentences"][0],
    ), delta["sentences"][0]
    assert "-point change in loss rate" in delta["sentences"][2]
    names = [chart["name"] for chart in doc["charts"]]
    assert names[-1] == "block_ratio"
    assert "latency_over_time" in names  # both sides overlaid on the run charts
    markdown = (tmp_path / "out" / "comparison.md").read_text()
    assert "one run a side" not in markdown
    assert "repeat the run with the sides swapped" in markdown
    assert "![Ratio by time block](blocks.png)" in markdown
    # Unpaired, message by message, the same runs' shared swings are in the interval.
    unpaired = document(write_comparison([a, b], tmp_path / "plain", force=False,
                                         draw_charts=False))["deltas"][0]  # fmt: skip
    plain, paired = unpaired["p50_ratio"]["ci95"], delta["p50_ratio"]["ci95"]
    assert plain[1] - plain[0] > paired[1] - paired[0]


def test_side_by_side_takes_one_run_a_side(tmp_path: Path) -> None:
    a, b = make(tmp_path / "a"), make(tmp_path / "b")
    with pytest.raises(ValueError, match="one run a side"):
        write_comparison([a, b], tmp_path / "out", force=False, versus=[b], side_by_side=True)


def test_a_saturated_side_is_named_on_a_side_by_side_page(tmp_path: Path) -> None:
    a = make(tmp_path / "a", latency_ms=noisy(20.0, seed=1), health_cpu=99.0)
    b = make(tmp_path / "b", latency_ms=noisy(20.0, seed=2))
    write_comparison([a], tmp_path / "out", force=False, versus=[b], side_by_side=True,
                     draw_charts=False)  # fmt: skip
    markdown = (tmp_path / "out" / "comparison.md").read_text()
    assert "- a: saturation: the load generator limited the run" in markdown
    assert "- b: saturation" not in markdown


def test_the_document_in_hand_is_the_one_written_and_its_sentences_are_the_verdicts(
    tmp_path: Path,
) -> None:
    fast = make(tmp_path / "fast", variant="optimized", latency_ms=jittered(10.0, seed=1))
    slow = make(tmp_path / "slow", variant="baseline", latency_ms=jittered(40.0, seed=2))
    index, in_hand = compare_and_write([fast, slow], tmp_path / "out", False, draw_charts=False)
    written = document(index)
    assert json.loads(comparison_json(in_hand)) == written
    sentences = verdict_sentences(in_hand)
    assert sentences == [s for delta in written["deltas"] for s in delta["sentences"]]
    assert any("higher" in sentence for sentence in sentences)
