"""Shared fixtures.

``handlers/`` is importable in tests as Lambda's task root (/var/task) is in a
function: pyproject.toml's ``pythonpath`` puts it there for pytest.
"""

import os

import pytest

# tests/in_locust/ runs in its own interpreter (tests/test_in_locust.py), never in this one.
collect_ignore = [] if os.environ.get("IN_LOCUST_INTERPRETER") else ["in_locust"]

LONGEST_FIRST = (
    "tests/test_in_locust.py", "tests/reliability/test_faults_end_to_end.py",
    "tests/fanbench/test_trials.py", "tests/loadtest/test_calibration.py",
    "tests/handlers/test_sendmessage.py", "tests/reliability/test_lambda_timeout.py",
    "tests/fanbench/test_sidebyside.py", "tests/bench/test_variant_faults.py",
    "tests/stage/test_stage_as_aws.py", "tests/reliability/test_swarm_across_hosts.py",
    "tests/reliability/test_clock_skew.py",
)  # fmt: skip
"""The modules that took longest with 2 xdist workers beside a busy core (25-75 s each,
2026-12-06). Collected first, so that workers start on them and the short modules fill in
around them: collected last (pytest's alphabetical order puts tests/test_*.py there),
they were the run's tail."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: position for position, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
