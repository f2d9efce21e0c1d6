"""Every exception fanbench defines descends from one root, FanbenchError (checked on source)."""

from __future__ import annotations

import argparse
import ast
import builtins
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from reports.compare import ScenarioMismatch
from reports.export import LedgerMismatchError
from tests.repo import REPO_ROOT

PACKAGES = ("fanbench_common", "loadtest", "reports")
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def _exception_classes() -> dict[str, tuple[str, list[str]]]:
    """Class name → (where, base names) for every class in the packages with any base."""
    found: dict[str, tuple[str, list[str]]] = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    bases = [
                        base.id if isinstance(base, ast.Name) else ast.unparse(base)
                        for base in node.bases
                    ]
                    where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
                    found[node.name] = (where, bases)
    return found


def _rooted(name: str, classes: dict[str, tuple[str, list[str]]], seen: set[str]) -> bool:
    if name == "FanbenchError":
        return True
    if name in seen or name not in classes:
        return False
    seen.add(name)
    return any(_rooted(base, classes, seen) for base in classes[name][1])


def _is_exception(name: str, classes: dict[str, tuple[str, list[str]]], seen: set[str]) -> bool:
    if name in BUILTIN_EXCEPTIONS:
        return True
    if name in seen or name not in classes:
        return False
    seen.add(name)
    return any(_is_exception(base, classes, seen) for base in classes[name][1])


def test_every_exception_class_descends_from_fanbench_error() -> None:
    classes = _exception_classes()
    exceptions = [name for name in classes if _is_exception(name, classes, set())]
    assert "FanbenchError" in exceptions
    outside = [
        f"{name} ({classes[name][0]})" for name in exceptions if not _rooted(name, classes, set())
    ]
    assert outside == [], f"exceptions outside FanbenchError: {outside}"


def test_the_source_scan_sees_the_classes_it_judges() -> None:
    classes = _exception_classes()
    for name in ("StageError", "ScenarioMismatch", "LedgerMismatchError", "RunDirError"):
        assert name in classes, name
    assert Path(REPO_ROOT / "fanbench_common" / "errors.py").is_file()


def test_the_cli_prints_a_user_error_in_one_line_but_lets_a_bug_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fanbench import cli

    def raising(error: Exception) -> Callable[[Sequence[str] | None], argparse.Namespace]:
        def failing(args: argparse.Namespace) -> int:
            raise error

        return lambda argv: argparse.Namespace(func=failing)

    monkeypatch.setattr(cli, "parse_arguments", raising(ScenarioMismatch("sizes differ")))
    assert cli.main([]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == "fanbench: error: sizes differ\n"
    monkeypatch.setattr(cli, "parse_arguments", raising(LedgerMismatchError("ledger")))
    with pytest.raises(LedgerMismatchError):
        cli.main([])
