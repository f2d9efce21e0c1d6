"""What ``fanbench run`` knows before the swarm, handed to the Locust master for run.json.

The master writes run.json once, at the end of the test. ``fanbench run`` knows
things the master does not (the scenario file it read, the local stage's
configuration and where to ask for its statistics), so it passes them in one
environment variable; the master adds them, and the stage's statistics as they
stand when collection ends, to what it writes. Secrets never travel here: the
stage configuration is redacted before it is encoded.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

RUN_CONTEXT_ENV = "FANBENCH_RUN_CONTEXT"
STATS_TIMEOUT_S = 10.0

StatsFetcher = Callable[[str], dict[str, Any]]


def encode(context: Mapping[str, Any]) -> str:
    return json.dumps(context, sort_keys=True, default=str)


def fetch_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=STATS_TIMEOUT_S) as response:
        stats: dict[str, Any] = json.load(response)
        return stats


def run_json_part(encoded: str | None, fetch: StatsFetcher = fetch_stats) -> dict[str, Any]:
    """run.json's keys from the context: ``scenario_file`` and ``stage`` (with its stats).

    Without a context (plain ``locust -f``) there is nothing to add; a stage whose
    statistics cannot be read is recorded with the error instead of its figures.
    """
    if not encoded:
        return {}
    context: dict[str, Any] = json.loads(encoded)
    part: dict[str, Any] = {}
    if context.get("scenario_file"):
        part["scenario_file"] = context["scenario_file"]
    if context.get("side_by_side"):  # which side of ``fanbench run --variants`` this run was
        part["side_by_side"] = context["side_by_side"]
    stage = dict(context.get("stage") or {"kind": "remote"})
    stats_url = stage.pop("stats_url", None)
    if stats_url:
        try:
            stats = fetch(stats_url)
        except (OSError, ValueError) as error:
            stage["stats_error"] = f"{type(error).__name__}: {error}"
        else:
            stage["stats"] = stats
            functions = stats.get("functions", {})
            stage["memory_mb"] = {name: f["memory_mb"] for name, f in functions.items()}
    part["stage"] = stage
    return part
