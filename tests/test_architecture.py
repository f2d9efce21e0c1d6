"""docs/architecture.md's arrows, checked on the import graph (every import, function-level too),
and its one command line: a single module builds the parser."""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from pathlib import Path

from tests.repo import REPO_ROOT

PACKAGES = ("handlers", "fanbench_common", "loadtest", "reports", "fanbench", "bench")
THE_COMMAND_LINE = "fanbench.cli"
"""The one module that builds ``fanbench``'s parser and registers every subcommand."""
PARSER_BUILDING = frozenset({"add_subparsers", "add_parser"})


def _module(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _sources() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            yield _module(path), path


def _graph() -> dict[str, set[str]]:
    return {module: {name.split(".")[0] for name in _imports(path)} for module, path in _sources()}


def _parser_building_calls(path: Path) -> Iterator[str]:
    """``x.add_subparsers(...)`` and ``x.add_parser(...)``: a subcommand registered here."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in PARSER_BUILDING
        ):
            yield node.func.attr


def _top_level_handler_modules() -> set[str]:
    return {path.stem for path in (REPO_ROOT / "handlers").glob("*.py")}


def test_the_graph_covers_every_package() -> None:
    graph = _graph()
    for package in PACKAGES:
        assert any(module.startswith(package) for module in graph), package
    assert "loadtest.stage.server" in graph
    assert THE_COMMAND_LINE in graph


def test_every_top_level_package_is_on_the_graph() -> None:
    """A package the graph does not see could import anything: each one is named here."""
    with_python = {
        path.relative_to(REPO_ROOT).parts[0]
        for path in REPO_ROOT.glob("*/**/*.py")
        if path.relative_to(REPO_ROOT).parts[0] not in {"tests", "node_modules", "runs"}
        and not path.relative_to(REPO_ROOT).parts[0].startswith(".")
    }
    assert with_python == set(PACKAGES)


def test_handlers_import_only_the_standard_library_boto3_and_each_other() -> None:
    own = _top_level_handler_modules()
    for module, imported in _graph().items():
        if module.startswith("handlers."):
            outside = imported & {
                "fanbench_common", "loadtest", "reports", "fanbench", "bench", "tests"
            }  # fmt: skip
            assert outside == set(), f"{module} imports {outside}"
            allowed = own | {"boto3", "botocore"} | _stdlib()
            # boto3's type stubs are imported for type checking only (TYPE_CHECKING).
            foreign = {name for name in imported - allowed if not name.startswith("mypy_boto3_")}
            assert foreign == set(), f"{module} imports {foreign}"


def test_the_shared_vocabulary_imports_neither_side() -> None:
    for module, imported in _graph().items():
        if module.startswith("fanbench_common"):
            assert not imported & {"loadtest", "reports", "fanbench", "bench"}, module


def test_reports_never_import_the_load_generator_or_the_application() -> None:
    for module, imported in _graph().items():
        if module.startswith("reports"):
            assert not imported & {"loadtest", "fanbench"}, module


def test_the_load_generator_never_imports_the_reports_or_the_application() -> None:
    for module, imported in _graph().items():
        if module.startswith("loadtest"):
            assert not imported & {"reports", "fanbench"}, module


def test_the_application_composes_the_load_generator_and_the_reports() -> None:
    graph = _graph()
    for module in (THE_COMMAND_LINE, "fanbench.run"):
        assert {"loadtest", "reports"} <= graph[module], module


def test_one_module_registers_every_subcommand() -> None:
    building = {module: list(_parser_building_calls(path)) for module, path in _sources()}
    assert {module for module, calls in building.items() if calls} == {THE_COMMAND_LINE}
    calls = building[THE_COMMAND_LINE]
    # The scan sees what it judges: one set of subcommands, each registered by a call there.
    assert calls.count("add_subparsers") == 1
    assert calls.count("add_parser") == len(_subcommands()) >= 11


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    from fanbench.cli import build_parser

    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _stdlib() -> set[str]:
    import sys

    return set(sys.stdlib_module_names)
