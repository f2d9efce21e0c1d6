"""CloudWatch Embedded Metric Format: one JSON log line per invocation."""

from __future__ import annotations

import json
from collections.abc import Mapping

NAMESPACE = "fanbench"


def emf_line(
    timestamp_ms: int,
    dimensions: Mapping[str, str],
    counts: Mapping[str, int],
    durations_ms: Mapping[str, float],
) -> str:
    """Render an EMF record: counts as ``Count``, durations as ``Milliseconds``."""
    metrics = [{"Name": name, "Unit": "Count"} for name in counts]
    metrics += [{"Name": name, "Unit": "Milliseconds"} for name in durations_ms]
    record: dict[str, object] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": metrics,
                }
            ],
        },
        **dimensions,
        **counts,
        **{name: round(value, 3) for name, value in durations_ms.items()},
    }
    return json.dumps(record, separators=(",", ":"))
