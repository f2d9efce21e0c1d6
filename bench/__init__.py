"""fanbench benchmarks: ``make bench`` or ``python -m bench``; see BENCHMARKS.md.

Not part of the test suite; ``tests/bench/`` runs each at smoke size so it cannot rot.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
"""Benchmarks run from the checkout: child processes start here to import ``bench``."""
