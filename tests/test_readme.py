"""The README and docs/ name only commands and flags that exist (read from the real parser)."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator

import pytest

from fanbench.cli import build_parser
from tests.repo import REPO_ROOT

DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```sh\n(.*?)```", re.DOTALL)
FANBENCH = re.compile(r"(?:^|[\s/(\"$])fanbench\s+(?P<rest>.*)")
README_MAX_LINES = 220


def _commands(text: str) -> Iterator[str]:
    """Each ``fanbench ...`` command of the document's sh blocks, continuations joined."""
    for block in FENCE.findall(text):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            code = line.split(" #", 1)[0]
            found = FANBENCH.search(code)
            if found:
                yield "fanbench " + found["rest"].split(")", 1)[0].strip()


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _documented() -> list[tuple[str, str]]:
    return [
        (path.relative_to(REPO_ROOT).as_posix(), command)
        for path in DOCUMENTS
        for command in _commands(path.read_text(encoding="utf-8"))
    ]


def test_the_documents_show_fanbench_commands_to_check() -> None:
    documented = _documented()
    assert len(documented) >= 20
    assert {command.split()[1] for _, command in documented} >= {"run", "report", "compare"}


@pytest.mark.parametrize(("where", "command"), _documented())
def test_every_documented_command_and_flag_exists(where: str, command: str) -> None:
    subcommands = _subcommands()
    words = shlex.split(command.replace("...", "x"))
    name = words[1]
    assert name in subcommands, f"{where}: `{command}` names no subcommand {name!r}"
    known = subcommands[name]._option_string_actions
    flags = [word.split("=", 1)[0] for word in words[2:] if word.startswith("--")]
    unknown = [flag for flag in flags if flag not in known]
    assert unknown == [], f"{where}: `{command}` uses flags `{name}` does not have: {unknown}"


def test_the_readme_command_table_lists_every_subcommand() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `fanbench ([a-z-]+)` \|", readme, re.MULTILINE))
    assert listed == set(_subcommands())


def test_the_readme_is_a_front_door() -> None:
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES
    assert lines[lines.index("```sh") + 1].startswith("make run")
    assert lines[lines.index("```sh") + 2].startswith("make test")


def test_every_flag_of_every_subcommand_has_help() -> None:
    missing = [
        f"{name} {action.option_strings[0]}"
        for name, parser in _subcommands().items()
        for action in parser._actions
        if action.option_strings and not action.help and action.dest != "help"
    ]
    assert missing == []
