"""The checkout the tests run from: its root and the deployable pieces at the root."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HANDLERS_DIR = REPO_ROOT / "handlers"
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
