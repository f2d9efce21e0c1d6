"""Checks shared by the benchmark smoke tests: well-formed, sane numbers (not targets)."""

from __future__ import annotations

import json
import math
from typing import Any

from bench.record import BenchResult, Scalar, entry


def finite_positive(value: Scalar) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def finite_non_negative(value: Scalar) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def well_formed(result: BenchResult, name: str, check_ratios: bool = True) -> dict[str, Any]:
    """The stored form of ``result``: JSON-clean, stamped, every ratio finite and positive."""
    assert result.name == name
    assert result.size == "smoke"
    assert result.rows, "no figures"
    assert result.duration_s > 0
    stored: dict[str, Any] = json.loads(json.dumps(entry(result), allow_nan=True))
    assert stored["machine"]["cores"] >= 1
    assert stored["machine"]["cpu_model"]
    for package in ("python", "boto3", "botocore", "websockets", "locust", "aiohttp", "moto"):
        assert stored["versions"][package] != "absent", package
    assert stored["parameters"]
    for ratio in result.ratios if check_ratios else ():
        assert finite_positive(ratio.value), ratio
    return stored
