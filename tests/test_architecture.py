"""docs/architecture.md's arrows, checked on the import graph (every import, function-level too)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.repo import REPO_ROOT

PACKAGES = ("handlers", "fanbench_common", "loadtest", "reports", "bench")
DRIVER_MODULES = frozenset({
    "loadtest.cli", "loadtest.run", "loadtest.trials", "loadtest.sidebyside",
    "loadtest.live_ledger",
})  # fmt: skip
"""The load generator's modules that read a run as the reports do: the command line and the
run driver (which print a run's summary and write its report) and the Locust master's live
ledger (the report's own figures while the test runs). Nothing else in loadtest/ may."""


def _module(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            graph[_module(path)] = {name.split(".")[0] for name in _imports(path)}
    return graph


def _top_level_handler_modules() -> set[str]:
    return {path.stem for path in (REPO_ROOT / "handlers").glob("*.py")}


def test_the_graph_covers_every_package() -> None:
    graph = _graph()
    for package in PACKAGES:
        assert any(module.startswith(package) for module in graph), package
    assert "loadtest.stage.server" in graph


def test_handlers_import_only_the_standard_library_boto3_and_each_other() -> None:
    own = _top_level_handler_modules()
    for module, imported in _graph().items():
        if module.startswith("handlers."):
            outside = imported & {"fanbench_common", "loadtest", "reports", "bench", "tests"}
            assert outside == set(), f"{module} imports {outside}"
            allowed = own | {"boto3", "botocore"} | _stdlib()
            # boto3's type stubs are imported for type checking only (TYPE_CHECKING).
            foreign = {name for name in imported - allowed if not name.startswith("mypy_boto3_")}
            assert foreign == set(), f"{module} imports {foreign}"


def test_the_shared_vocabulary_imports_neither_side() -> None:
    for module, imported in _graph().items():
        if module.startswith("fanbench_common"):
            assert not imported & {"loadtest", "reports", "bench"}, module


def test_reports_never_import_the_load_generator() -> None:
    for module, imported in _graph().items():
        if module.startswith("reports"):
            assert "loadtest" not in imported, module


def test_the_load_generator_reads_runs_as_reports_do_only_in_its_driver() -> None:
    readers = {
        module
        for module, imported in _graph().items()
        if module.startswith("loadtest") and "reports" in imported
    }
    assert readers <= DRIVER_MODULES, readers - DRIVER_MODULES
    assert not any(module.startswith("loadtest.stage") for module in readers)


def _stdlib() -> set[str]:
    import sys

    return set(sys.stdlib_module_names)
