"""Loss, duplicates and lateness where Locust users look: its statistics, failures, CSV and web UI.

The master's running ledger (``fanbench.live_ledger``, the figures behind
``fanbench run``'s progress line; ``install`` plugs it into the load generator's master) is
written into Locust's own statistics every second, as three rows of type ``ledger``. Each
row's failure ratio is one of the report's rates:

* ``lost deliveries``: requests = deliveries expected of the messages whose drain
  window has passed, failures = those never received (the loss rate);
* ``duplicate receipts``: requests = receipts, failures = receipts beyond a
  recipient's first of a message;
* ``late receipts``: requests = receipts, failures = receipts after the drain
  window (known once sending has stopped).

Their failures appear in the failures tab and ``--csv``'s failures file, and
count in the Aggregated row's failures (so the header's failure ratio is not
clean while messages are missing); their requests do not count there, being no
traffic of their own. Rows are set to the ledger's figures, not accumulated: a
late receipt can turn a counted loss back into a delivery. When the run
directory is written, the rows take the report's own figures.

With ``--otel``, the same figures are exported as OpenTelemetry metrics
(``fanbench.deliveries.expected``, ``fanbench.deliveries.lost``,
``fanbench.receipts``, ``fanbench.receipts.duplicate``, ``fanbench.receipts.late``).

The web UI gets a "Fan-out" tab through Locust's own extension points
(``extendedTabs``/``extendedTables`` template arguments and ``extended_stats`` in
the ``/stats/requests`` answer): per second, deliveries expected, delivered,
lost so far, p50/p99 of fan-out latency, and the saturation line; its CSV is at
``/fanbench/fanout.csv``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from locust.stats import CSV_STATS_INTERVAL_SEC, RequestStats, StatsError

from fanbench.live_ledger import LiveFigures, final_figures, live_figures
from fanbench_common.rundir import Run, read_run
from loadtest.coordination import MasterState

LEDGER = "ledger"
"""Locust's Type column for the rows written here."""
LOST, DUPLICATE, LATE = "lost deliveries", "duplicate receipts", "late receipts"
TAB = "fanout"
CSV_PATH = "/fanbench/fanout.csv"
PUBLISH_INTERVAL_S = 1.0
CSV_TICK_POLL_S = 0.02
CSV_TICK_SLACK_S = 0.5
"""How much later than its interval a tick of Locust's CSV writer may come on a busy host."""
COLUMNS = [
    ("second", "Second"),
    ("expected", "Deliveries expected"),
    ("delivered", "Delivered"),
    ("lost", "Lost so far"),
    ("p50", "p50 latency (ms)"),
    ("p99", "p99 latency (ms)"),
    ("note", "Saturation"),
]
"""The fan-out tab's columns; single-word keys (Locust's UI camel-cases keys)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerRow:
    name: str
    requests: int
    failures: int
    error: str


def ledger_rows(figures: LiveFigures, drain_s: float) -> list[LedgerRow]:
    """The three Locust rows for these figures; the error text explains each failure."""
    return [
        LedgerRow(LOST, figures.expected, figures.lost,
                  f"lost: never received (counted once its {drain_s:g} s drain window passed)"),
        LedgerRow(DUPLICATE, figures.receipts, figures.duplicates,
                  "duplicate: a recipient received the same message again"),
        LedgerRow(LATE, figures.receipts, figures.late,
                  f"late: received more than {drain_s:g} s after sending stopped"),
    ]  # fmt: skip


def set_rows(stats: RequestStats, rows: Iterable[LedgerRow], now_s: float) -> None:
    """Make Locust's entries and errors show ``rows`` (changes counted in the current second)."""
    second = int(now_s)
    for row in rows:
        entry = stats.get(row.name, LEDGER)
        added = row.requests - entry.num_requests
        entry.num_requests += added
        # No response times: Locust's averages and percentiles of these rows stay empty.
        entry.num_none_requests += added
        if added > 0:
            entry.num_reqs_per_sec[second] += added
        failed = row.failures - entry.num_failures
        entry.num_failures += failed
        stats.total.num_failures += failed
        if failed > 0:
            entry.num_fail_per_sec[second] += failed
            stats.total.num_fail_per_sec[second] += failed
        entry.last_request_timestamp = now_s
        key = StatsError.create_key(LEDGER, row.name, row.error)
        if row.failures > 0:
            error = stats.errors.get(key)
            if error is None:
                error = stats.errors[key] = StatsError(LEDGER, row.name, row.error, 0, now_s)
            error.occurrences = row.failures
            error.last_seen = now_s
        else:
            stats.errors.pop(key, None)


def wait_for_csv_tick(stats_csv: Path) -> bool:
    """Wait until Locust's CSV writer has rewritten ``stats_csv`` once more (it does every
    ``CSV_STATS_INTERVAL_SEC``, in one go between two greenlet switches, so that rewrite holds
    the rows set before this call); ``False`` if no rewrite was seen in time."""

    def written() -> int:
        with contextlib.suppress(OSError):
            return stats_csv.stat().st_mtime_ns
        return 0

    before = written()
    deadline = time.monotonic() + CSV_STATS_INTERVAL_SEC + CSV_TICK_SLACK_S
    while time.monotonic() < deadline:
        gevent.sleep(CSV_TICK_POLL_S)
        if written() != before:
            return True
    return False


def tab_rows(figures: LiveFigures | None) -> list[dict[str, Any]]:
    """The fan-out tab's table: the whole test so far (with the saturation line), then each
    second, newest first."""
    if figures is None:
        return []
    seconds = figures.per_second
    whole = {
        "second": "final" if figures.final else "so far",
        "expected": figures.expected_sent,
        "delivered": figures.receipts,
        "lost": figures.lost,
        "p50": figures.p50_ms,
        "p99": figures.p99_ms,
        "note": figures.saturation,
    }
    return [whole] + [
        {**{k: r[k] for k in ("second", "expected", "delivered", "lost")},
         "p50": r["p50_ms"], "p99": r["p99_ms"], "note": ""}
        for r in reversed(seconds)
    ]  # fmt: skip


def tab_csv(figures: LiveFigures | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([title for _, title in COLUMNS])
    for row in tab_rows(figures):
        writer.writerow(["" if row[key] is None else row[key] for key, _ in COLUMNS])
    return out.getvalue()


class LedgerView:
    """The latest figures, shown in Locust's statistics, its OpenTelemetry export and web UI."""

    def __init__(self, environment: Any, drain_s: float) -> None:
        self.environment = environment
        self.drain_s = drain_s
        self.figures: LiveFigures | None = None

    def show(self, figures: LiveFigures) -> None:
        self.figures = figures
        set_rows(self.environment.stats, ledger_rows(figures, self.drain_s), time.time())

    def show_final(self, run_dir: Any) -> None:
        """The report's figures, from the run directory just written; then one tick of
        Locust's CSV writer so ``--csv`` holds them before Locust closes its files."""
        try:
            self.show(final_figures(read_run(run_dir)))
        except Exception:  # the run directory is the result; a view of it must not break it
            logger.exception("fanbench: could not show the final ledger in Locust's statistics")
            return
        options = self.environment.parsed_options
        if options is not None and getattr(options, "csv_prefix", None):
            wait_for_csv_tick(Path(f"{options.csv_prefix}_stats.csv"))

    # -- OpenTelemetry ------------------------------------------------------------------

    def export_otel(self) -> None:
        """Observable counters read from the latest figures (Locust's ``--otel`` has set the
        meter provider); they can go down, as a late receipt turns a loss into a delivery."""
        from opentelemetry.metrics import Observation, get_meter

        meter = get_meter("fanbench")

        def observe(read: Any) -> Any:
            def callback(_options: Any) -> Any:
                if self.figures is not None:
                    yield Observation(read(self.figures))

            return callback

        for name, read, description in (
            ("fanbench.deliveries.expected", lambda f: f.expected,
             "deliveries expected of messages whose drain window has passed"),
            ("fanbench.deliveries.lost", lambda f: f.lost,
             "expected deliveries never received within the drain window"),
            ("fanbench.receipts", lambda f: f.receipts, "fan-out receipts"),
            ("fanbench.receipts.duplicate", lambda f: f.duplicates,
             "receipts beyond a recipient's first of a message"),
            ("fanbench.receipts.late", lambda f: f.late, "receipts after the drain window"),
        ):  # fmt: skip
            meter.create_observable_up_down_counter(
                name, callbacks=[observe(read)], unit="{delivery}", description=description
            )

    # -- web UI -----------------------------------------------------------------------------

    def extend_web_ui(self, web_ui: Any) -> None:
        from flask import Response, request

        web_ui.template_args["extendedTabs"] = [{"title": "Fan-out", "key": TAB}]
        web_ui.template_args["extendedTables"] = [
            {"key": TAB, "structure": [{"key": key, "title": title} for key, title in COLUMNS]}
        ]
        web_ui.template_args["extendedCsvFiles"] = [
            {"href": CSV_PATH, "title": "Download fan-out per second CSV"}
        ]

        @web_ui.app.after_request
        def _with_fanout(response: Response) -> Response:
            if request.path != "/stats/requests" or response.status_code != 200:
                return response
            answer = json.loads(response.get_data())
            answer["extended_stats"] = [{"key": TAB, "data": tab_rows(self.figures)}]
            response.set_data(json.dumps(answer))
            return response

        @web_ui.app.route(CSV_PATH)
        def _fanout_csv() -> Response:
            return Response(
                tab_csv(self.figures), mimetype="text/csv",
                headers={"Content-Disposition": "attachment;filename=fanbench_fanout.csv"},
            )  # fmt: skip


def install(environment: Any, master: MasterState) -> None:
    """Plug the running ledger into ``master`` and show it in Locust. A ``MasterPlugin``: called
    after the master's ``test_stopping`` listener, so the final figures follow the run directory."""
    view = LedgerView(environment, master.scenario.drain_s)

    def running_ledger(run: Run, horizon_ns: int) -> int:
        figures = live_figures(run, horizon_ns)
        view.show(figures)
        return figures.lost

    master.running_ledger = running_ledger
    if environment.web_ui is not None:
        view.extend_web_ui(environment.web_ui)
    options = environment.parsed_options
    if options is not None and getattr(options, "otel", False):
        # Without the SDK Locust has already said that its OpenTelemetry is not enabled.
        with contextlib.suppress(ImportError):
            view.export_otel()

    @environment.events.test_stopping.add_listener
    def _final(**_: Any) -> None:
        if master.written and (master.run_dir / "run.json").is_file():
            view.show_final(master.run_dir)
