"""Shared fixtures.

``handlers/`` is importable in tests as Lambda's task root (/var/task) is in a
function: pyproject.toml's ``pythonpath`` puts it there for pytest.
"""
