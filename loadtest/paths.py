"""Where the deployable pieces live, and how Lambda would see them."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HANDLERS_DIR = PROJECT_ROOT / "handlers"
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"


def put_handlers_on_path() -> None:
    """Make ``handlers/`` importable the way Lambda's task root (/var/task) is."""
    entry = str(HANDLERS_DIR)
    if entry not in sys.path:
        sys.path.insert(0, entry)
