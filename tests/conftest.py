"""Shared fixtures.

``handlers/`` is importable in tests as Lambda's task root (/var/task) is in a
function: pyproject.toml's ``pythonpath`` puts it there for pytest.
"""

import os

import pytest

# tests/in_locust/ runs in its own interpreter (tests/test_in_locust.py), never in this one.
collect_ignore = [] if os.environ.get("IN_LOCUST_INTERPRETER") else ["in_locust"]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers it too; registered here, a run without xdist does not warn.
    config.addinivalue_line("markers", "xdist_group(name): tests that share an xdist worker")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist with ``--dist loadgroup`` (``make test``): a module's tests share a
    worker, so a module-scoped stage or swarm starts once. Tests a conftest has grouped
    otherwise (tests/reliability: by the swarms they read) keep their group."""
    for item in items:
        if not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
