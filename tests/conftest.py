"""Shared fixtures.

``handlers/`` is importable in tests as Lambda's task root (/var/task) is in a
function: pyproject.toml's ``pythonpath`` puts it there for pytest.
"""

import os

# tests/in_locust/ runs in its own interpreter (tests/test_in_locust.py), never in this one.
collect_ignore = [] if os.environ.get("IN_LOCUST_INTERPRETER") else ["in_locust"]
