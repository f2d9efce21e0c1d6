"""Runs ``tests/in_locust/`` in its own interpreter, Locust imported before anything else.

See ``tests/in_locust/conftest.py`` for why. The nested run's output is shown
when it fails; every test in it must pass.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.repo import REPO_ROOT

NESTED = (
    "import locust, sys, pytest; "
    "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/in_locust']))"
)


@pytest.mark.timeout(900)
def test_the_locust_process_tests_pass() -> None:
    env = {**os.environ, "IN_LOCUST_INTERPRETER": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-c", NESTED], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=880, check=False,
    )  # fmt: skip
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    assert " passed" in result.stdout.splitlines()[-1], result.stdout[-2000:]
